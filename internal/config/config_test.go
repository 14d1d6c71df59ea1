package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const original = `version: '1'

project:
  app:
    include:
      - './app'
  website:
    include:
      - './cronjobs'
      - './web'
    exclude:
      - './web/src/vendor'
`

func TestOriginalExample(t *testing.T) {
	c, err := Parse("/x/runup.yaml", []byte(original))
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != 1 || c.Dir != "/x" || strings.Join(c.Order, ",") != "app,website" {
		t.Fatalf("parsed %+v", c)
	}
	w := c.Projects["website"]
	if strings.Join(w.Include, ",") != "./cronjobs,./web" || strings.Join(w.Exclude, ",") != "./web/src/vendor" {
		t.Fatalf("website: %+v", w)
	}
}

func TestVersion2(t *testing.T) {
	c, err := Parse("/x/runup.yaml", []byte(`version: '2'
repository: /srv/backups/x
compression: max
password: env:MY_PW
project:
  etc:
    include: [/etc/nginx, ./local]
    exclude: ['**/*.log', './local/tmp']
    keep: {last: 3, daily: 7, weekly: 4, monthly: 12, within: 2w, tags: [keep]}
`))
	if err != nil {
		t.Fatal(err)
	}
	k := c.Projects["etc"].Keep
	if c.Repository != "/srv/backups/x" || c.Compression != "max" || c.Password != "env:MY_PW" ||
		k.Last != 3 || k.Daily != 7 || k.Monthly != 12 || k.Within != 14*24*time.Hour || k.Tags[0] != "keep" {
		t.Fatalf("parsed %+v %+v", c, k)
	}
}

// The example of the README's "Set and forget" section.
const setAndForget = `version: '2'
repository: /srv/backups/site
password: file:/etc/runup/password
project:
  site:
    include: ['./www', './etc']
    cron: '0 3 * * *'
    keep: {daily: 7, weekly: 4, monthly: 12}
    hooks:
      before: ['systemctl stop app']
      after: ['systemctl start app']
      failure: ['logger -t runup "site backup failed"']
      timeout: 10m
    commands:
      - {name: 'db/site.sql', run: 'pg_dump site'}
    notify: ['https://hc-ping.com/5e1f']
    copy-to:
      - s3://backup.example.com/site
      - {repository: 'sftp://u@h/site', password: 'file:/etc/runup/offsite'}
  dumps:
    commands:
      - {name: all.sql, run: pg_dumpall}
    cron: '@every 15m'
maintenance:
  forget: '@daily'
  check: {cron: '@weekly', read-data-subset: '5%'}
  notify: https://hc-ping.com/maint
`

func TestSetAndForget(t *testing.T) {
	c, err := Parse("/x/runup.yaml", []byte(setAndForget))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Projects["site"]
	if p.Cron.String() != "0 3 * * *" || p.Keep.Daily != 7 {
		t.Errorf("cron/keep: %+v", p)
	}
	h := p.Hooks
	if len(h.Before) != 1 || h.Before[0] != "systemctl stop app" || h.After[0] != "systemctl start app" ||
		!strings.Contains(h.Failure[0], "logger") || h.Timeout != 10*time.Minute {
		t.Errorf("hooks: %+v", h)
	}
	if len(p.Commands) != 1 || p.Commands[0].Name != "db/site.sql" || p.Commands[0].Run != "pg_dump site" {
		t.Errorf("commands: %+v", p.Commands)
	}
	if len(p.Notify) != 1 || len(p.CopyTo) != 2 || p.CopyTo[0].Repository != "s3://backup.example.com/site" ||
		p.CopyTo[1].Password != "file:/etc/runup/offsite" {
		t.Errorf("notify/copy-to: %+v %+v", p.Notify, p.CopyTo)
	}
	d := c.Projects["dumps"]
	if len(d.Include) != 0 || d.Commands[0].Run != "pg_dumpall" || d.Cron.String() != "@every 15m" || d.Hooks.Timeout != DefaultHookTimeout {
		t.Errorf("dumps: %+v", d)
	}
	m := c.Maintenance
	if m.Forget.String() != "@daily" || m.Check.String() != "@weekly" || m.ReadDataSubset != "5%" || m.Notify[0] != "https://hc-ping.com/maint" {
		t.Errorf("maintenance: %+v", m)
	}
}

func TestSelection(t *testing.T) {
	cfg, err := Parse("/x/runup.yaml", []byte(strings.Replace(`version: '2'
project:
  a:
    include: [x]
    iexclude: ['*.TMP']
    exclude-file: [excludes.txt]
    iexclude-file: [iexcludes.txt]
    exclude-if-present: [.nobackup, 'TAG:header']
    exclude-caches: true
    exclude-larger-than: 1.5G
    one-file-system: true
    files-from: [more.txt]
`, "1.5G", "2G", 1)))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Projects["a"].Select
	want := Selection{IExclude: []string{"*.TMP"}, ExcludeFile: []string{"excludes.txt"}, IExcludeFile: []string{"iexcludes.txt"},
		ExcludeIfPresent: []string{".nobackup", "TAG:header"}, ExcludeCaches: true, ExcludeLargerThan: 2 << 30,
		OneFileSystem: true, FilesFrom: []string{"more.txt"}}
	if fmt.Sprint(s) != fmt.Sprint(want) {
		t.Errorf("selection %+v\nwant %+v", s, want)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "100": 100, "1K": 1 << 10, "1k": 1 << 10, "10M": 10 << 20, "10MiB": 10 << 20,
		"2G": 2 << 30, "2GB": 2 << 30, "1T": 1 << 40} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "1.5G", "lots", "1X"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"", "The YAML file is empty."},
		{"# only a comment\n", "The YAML file is empty."},
		{"version: 1\nproject: {a: {include: [x]}}", ":1: The version needs to be a string."},
		{"version: 1.0\nproject: {a: {include: [x]}}", "The version needs to be a string."},
		{"version: '7'\nproject: {a: {include: [x]}}", ":1: The YAML version 7 is not supported."},
		{"project: {a: {include: [x]}}", "\"version\" is required"},
		{"version: '1'\n", "\"project\" is required"},
		{"version: '1'\nproject: {}\n", "must not be empty"},
		{"version: '1'\nproject:\n", "must not be empty"},
		{"version: '1'\nproject:\n  a:\n    exclude: [x]\n", ":3: project \"a\" needs a non-empty \"include\" list"},
		{"version: '1'\nproject:\n  a:\n    include: []\n", "non-empty \"include\""},
		{"version: '1'\nproject:\n  a:\n    include: x\n", "must be a list"},
		{"version: '1'\nfoo: 1\nproject: {a: {include: [x]}}", ":2: unknown key \"foo\""},
		{"version: '1'\nproject:\n  a:\n    include: [x]\n    bogus: 1\n", ":5: unknown key \"bogus\" in project \"a\""},
		{"version: '1'\ncron: '* * * * *'\nproject: {a: {include: [x]}}", "not supported in version '1'"},
		{"version: '1'\nproject:\n  a:\n    include: [x]\n    keep: {last: 1}\n", ":5: the key \"keep\" in project \"a\" is not supported in version '1'"},
		{"version: '2'\npassword: hunter2\nproject: {a: {include: [x]}}", "never the password itself"},
		{"version: '2'\ncompression: lots\nproject: {a: {include: [x]}}", "compression \"lots\""},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    keep: {daily: -1}\n", "keep.daily"},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    keep: {dayly: 1}\n", "unknown key \"dayly\""},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    exclude: ['[']\n", "not a valid glob"},
		{"version: '1'\nproject:\n  'a b':\n    include: [x]\n", "project name"},
		{"version: '1'\nproject: [a]\n", "must not be empty"},
		{"version: '1'\n  bad: indent\n", ":2: invalid YAML"},
		// The parser names the block's line; the mistake is lines below.
		{"version: '1'\nproject:\n  app:\n    include:\n     - './app'\n    - './b'\n", ":6: invalid YAML"},
		{"version: '1'\nproject:\n  app:\n    include: [a]\n    exclude: ['b'\n    x: 1\n", ":5: invalid YAML"},
		{"version: '1'\nproject:\n  a:\n    include: [x]\n    cron: '@daily'\n", ":5: the key \"cron\" in project \"a\" is not supported in version '1'"},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    cron: '0 3 * *'\n", ":5: project \"a\": cron: schedule \"0 3 * *\""},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    cron: 3\n", ":5: project \"a\": cron: schedule \"3\""},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    hooks: {before: [''], after: [x]}\n", ":5: project \"a\": hooks.before: every entry"},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    hooks: {beforehand: [x]}\n", ":5: unknown key \"beforehand\" in hooks"},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    hooks: {timeout: soon}\n", "hooks.timeout \"soon\""},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    commands:\n      - {name: db.sql}\n", ":6: project \"a\": a command needs both"},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    commands:\n      - {name: ../db.sql, run: pg_dump}\n", ":6: project \"a\": command name \"../db.sql\""},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    commands:\n      - {name: /db.sql, run: pg_dump}\n", "want a relative path"},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    commands:\n      - {name: d.sql, run: a}\n      - {name: d.sql, run: b}\n", ":7: project \"a\": two commands are named \"d.sql\""},
		{"version: '2'\nproject:\n  a:\n    include: [./db]\n    commands:\n      - {name: db/d.sql, run: a}\n", ":6: project \"a\": command output \"db/d.sql\" would lie inside the include \"./db\""},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    commands:\n      - {name: d.sql, run: a, shell: bash}\n", "unknown key \"shell\" in a command"},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    notify: ['ftp://x']\n", ":5: project \"a\": notify: \"ftp://x\" is not an http"},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    copy-to: [{repository: /b, password: hunter2}]\n", "copy-to password: say where"},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    copy-to: [{password: env:X}]\n", "copy-to needs a repository"},
		{"version: '2'\nmaintenance: {forget: sometimes}\nproject: {a: {include: [x]}}", ":2: maintenance.forget: schedule \"sometimes\""},
		{"version: '2'\nmaintenance: {check: {read-data-subset: 5%}}\nproject: {a: {include: [x]}}", "maintenance.check needs a cron"},
		{"version: '2'\nmaintenance: {check: {cron: '@weekly', read-data-subset: 500%}}\nproject: {a: {include: [x]}}", "read-data-subset \"500%\""},
		{"version: '2'\nmaintenance: {prune: '@daily'}\nproject: {a: {include: [x]}}", ":2: unknown key \"prune\" in maintenance"},
		{"version: '1'\nmaintenance: {forget: '@daily'}\nproject: {a: {include: [x]}}", "unknown key \"maintenance\""},
		{"version: '1'\nproject:\n  a:\n    include: [x]\n    exclude-caches: true\n", ":5: the key \"exclude-caches\" in project \"a\" is not supported in version '1'"},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    exclude-caches: yes please\n", ":5: project \"a\": \"exclude-caches\" is true or false"},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    exclude-larger-than: huge\n", ":5: project \"a\": exclude-larger-than \"huge\": want a size"},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    iexclude: ['[x']\n", "iexclude pattern \"[x\" is not a valid glob"},
		{"version: '2'\nproject:\n  a:\n    include: [x]\n    files-from: list\n", "\"files-from\" must be a list"},
	} {
		_, err := Parse("/x/runup.yaml", []byte(tc.yaml))
		var ce *Error
		if err == nil || !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "/x/runup.yaml") {
			t.Errorf("%q:\n got  %v\n want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("missing config: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "runup.yml"), []byte(original), 0o644)
	if p, err := Find(dir); err != nil || filepath.Base(p) != "runup.yml" {
		t.Fatalf("runup.yml: %v %v", p, err)
	}
	os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte(original), 0o644)
	if p, _ := Find(dir); filepath.Base(p) != "runup.yaml" {
		t.Fatal("runup.yaml must win over runup.yml")
	}
}

func TestFindPermission(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads every folder")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "runup.yaml"), []byte(original), 0o644)
	os.Chmod(dir, 0)
	defer os.Chmod(dir, 0o755)
	if _, err := Find(dir); err == nil || !strings.Contains(err.Error(), "permission denied") || errors.Is(err, ErrNotFound) {
		t.Fatalf("unreadable folder: %v", err)
	}
}

func TestReadPassword(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "runup.yaml")
	os.WriteFile(cfg, []byte("version: '2'"), 0o644)
	os.WriteFile(filepath.Join(dir, "pw"), []byte("from-file\n"), 0o600)
	t.Setenv("RUNUP_TEST_PW", "from-env")
	for spec, want := range map[string]string{"env:RUNUP_TEST_PW": "from-env", "file:pw": "from-file", "command:echo from-cmd": "from-cmd"} {
		got, err := ReadPassword(spec, cfg)
		if err != nil || string(got) != want {
			t.Errorf("%s: %q %v", spec, got, err)
		}
	}
	for _, spec := range []string{"env:RUNUP_UNSET_VAR", "file:missing", "command:false", "plain"} {
		if _, err := ReadPassword(spec, cfg); err == nil {
			t.Errorf("%s: no error", spec)
		}
	}
	// A config that others could have written runs no command of theirs.
	for _, mode := range []os.FileMode{0o664, 0o646, 0o666} {
		os.Chmod(cfg, mode)
		if _, err := ReadPassword("command:echo x", cfg); err == nil || !strings.Contains(err.Error(), "chmod go-w") {
			t.Errorf("mode %v: %v", mode, err)
		}
		if _, err := ReadPassword("env:RUNUP_TEST_PW", cfg); err != nil {
			t.Errorf("mode %v: env: %v", mode, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for s, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "1y2m": (365 + 60) * 24 * time.Hour, "12h": 12 * time.Hour} {
		if got, err := ParseDuration(s); err != nil || got != want {
			t.Errorf("%s: %v %v", s, got, err)
		}
	}
	for _, s := range []string{"", "7", "d", "3x", "99999999d"} {
		if _, err := ParseDuration(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(original))
	f.Add([]byte("version: '2'\nproject: {a: {include: [x], keep: {last: 1}}}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = Parse("/f/runup.yaml", b)
	})
}
