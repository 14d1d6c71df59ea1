// Package config reads runup.yaml.
//
// Version '1' is read exactly as the original RunUp read it, with its
// messages; version '2' adds the repository location, compression, a
// password source, glob excludes, retention policies, and what makes a
// backup run by itself: schedules (cron), hooks, commands whose output is
// backed up, notifications, copies to other repositories and repository
// maintenance. Every error names the file and line, and unknown keys are
// refused by name.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"gopkg.in/yaml.v3"

	"github.com/runup/runup/internal/scheduler"
)

// FileNames are looked up in the context directory, in this order.
var FileNames = []string{"runup.yaml", "runup.yml"}

// ErrNotFound means no config file is in the context directory.
var ErrNotFound = errors.New("no runup.yaml")

// Error is a problem in a config file, at a line.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Config is a parsed runup.yaml.
type Config struct {
	File        string // absolute path of the file
	Dir         string // the context: the file's directory
	Version     int    // 1 or 2
	Repository  string // version 2; empty means .runup in Dir
	Compression string // version 2; empty means auto
	Password    string // version 2: env:NAME, file:PATH or command:CMD
	Projects    map[string]*Project
	Order       []string // project names as they appear in the file
	// Maintenance is what the daemon does for the whole repository
	// (version 2).
	Maintenance Maintenance
}

// Project is one project of a config.
type Project struct {
	Name    string
	Include []string // as written
	Exclude []string // as written
	Keep    *Keep    // version 2; nil when not given
	Line    int

	// The rest is version 2: what makes the project back up by itself.
	Cron     scheduler.Schedule // zero: only by hand
	Hooks    Hooks
	Commands []Command
	Notify   []string // URLs pinged at start, success and failure
	CopyTo   []CopyTarget
	Select   Selection
}

// Hooks are shell commands run around a project's backup.
type Hooks struct {
	Before  []string // a failure skips the backup and counts as its failure
	After   []string // run once the before-hooks ran, whatever the outcome
	Failure []string // run when the backup (or a before-hook) failed
	// Timeout bounds each hook and each command (DefaultHookTimeout).
	Timeout time.Duration
}

// DefaultHookTimeout bounds each hook and command when runup.yaml does not.
const DefaultHookTimeout = time.Hour

// Empty reports whether no hook is set.
func (h Hooks) Empty() bool { return len(h.Before)+len(h.After)+len(h.Failure) == 0 }

// Command is data that is not a file: the standard output of Run (a shell
// command) is stored in the job as the file Name.
type Command struct {
	Name string // slash-separated, relative to the job's root
	Run  string
	Line int
}

// Selection is what a backup leaves out beyond exclude, and where else it
// finds includes: restic's backup options with restic's meanings, from the
// command line or from version 2 keys of the same names.
type Selection struct {
	IExclude          []string // exclude patterns, matched without case
	ExcludeFile       []string // files of exclude patterns, one per line
	IExcludeFile      []string
	ExcludeIfPresent  []string // NAME[:HEADER]: a directory holding it is left out
	ExcludeCaches     bool     // directories with a CACHEDIR.TAG
	ExcludeLargerThan int64    // bytes; 0: no limit
	OneFileSystem     bool
	FilesFrom         []string // files listing includes, one per line
}

// selectionKeys are the version 2 project keys of a Selection.
var selectionKeys = []string{"iexclude", "exclude-file", "iexclude-file", "exclude-if-present", "exclude-caches",
	"exclude-larger-than", "one-file-system", "files-from"}

// ParseSize reads a size as restic writes it: a number of bytes, or with
// K, M, G or T (powers of 1024; "KiB", "MB" and "m" are read the same).
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	u := strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(s, "B"), "i"))
	if u != "" {
		switch u[len(u)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			u = u[:len(u)-1]
		}
	}
	n, err := strconv.ParseInt(u, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number with K, M, G or T", s)
	}
	return n * mult, nil
}

// CopyTarget is a repository that receives a copy of each new job.
type CopyTarget struct {
	Repository string // a path (relative to the config's directory) or URL
	// Password is the target's password source (env:, file:, command:);
	// empty means the source repository's password.
	Password string
}

// Maintenance is repository-wide work on a schedule.
type Maintenance struct {
	// Forget applies every project's keep: and then prunes.
	Forget scheduler.Schedule
	Check  scheduler.Schedule
	// ReadDataSubset is check's --read-data-subset ("5%", "1/10"); empty
	// checks structure only.
	ReadDataSubset string
	Notify         []string
}

// Keep is a retention policy.
type Keep struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
	Within                                       time.Duration
	Tags                                         []string
}

// Find locates the config file in dir.
func Find(dir string) (string, error) {
	for _, name := range FileNames {
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err == nil && !fi.IsDir() {
			return p, nil
		}
		if errors.Is(err, fs.ErrPermission) {
			abs, _ := filepath.Abs(dir)
			return "", fmt.Errorf("cannot look for %s in %s: permission denied (run as a user who can read it)", name, abs)
		}
	}
	abs, _ := filepath.Abs(dir)
	return "", fmt.Errorf("%w in %s (looked for %s): create one, or pass -c DIR", ErrNotFound, abs, strings.Join(FileNames, ", "))
}

// Load finds and parses the config file in dir.
func Load(dir string) (*Config, error) {
	p, err := Find(dir)
	if err != nil {
		return nil, err
	}
	return LoadFile(p)
}

// LoadFile parses one config file.
func LoadFile(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(abs, data)
}

type parser struct {
	file string
}

func (p *parser) errf(n *yaml.Node, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// Parse parses config data; file is its absolute path.
func Parse(file string, data []byte) (*Config, error) {
	p := &parser{file: file}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		line := 0
		if _, err := fmt.Sscanf(msg, "line %d:", &line); err == nil {
			msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
		}
		if l := firstBadLine(data); l > 0 {
			line = l
		}
		return nil, &Error{File: file, Line: line, Msg: "invalid YAML: " + msg}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 || doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null" {
		return nil, p.errf(nil, "The YAML file is empty.")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, p.errf(root, "the file must be a mapping of keys (version, project, …)")
	}
	c := &Config{File: file, Dir: filepath.Dir(file), Projects: map[string]*Project{}}
	keys := map[string]*yaml.Node{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i]
		if _, dup := keys[k.Value]; dup {
			return nil, p.errf(k, "key %q is given twice", k.Value)
		}
		keys[k.Value] = root.Content[i+1]
	}
	vn, ok := keys["version"]
	if !ok {
		return nil, p.errf(root, "the key \"version\" is required: add version: '1' (or '2')")
	}
	if vn.Kind != yaml.ScalarNode || vn.Tag != "!!str" {
		return nil, p.errf(vn, "The version needs to be a string. Write version: '%s' with quotes.", vn.Value)
	}
	switch vn.Value {
	case "1", "1.0":
		c.Version = 1
	case "2", "2.0":
		c.Version = 2
	default:
		return nil, p.errf(vn, "The YAML version %s is not supported. Use '1' or '2'.", vn.Value)
	}
	allowed := []string{"version", "project"}
	if c.Version == 2 {
		allowed = append(allowed, "repository", "compression", "password", "maintenance")
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i]
		if slices.Contains(allowed, k.Value) {
			continue
		}
		if c.Version == 1 && slices.Contains([]string{"repository", "compression", "password", "cron", "encrypt"}, k.Value) {
			return nil, p.errf(k, "the key %q is not supported in version '1'; use version: '2'", k.Value)
		}
		return nil, p.errf(k, "unknown key %q (allowed here: %s)", k.Value, strings.Join(allowed, ", "))
	}
	if c.Version == 2 {
		for _, s := range []struct {
			key string
			dst *string
		}{{"repository", &c.Repository}, {"compression", &c.Compression}, {"password", &c.Password}} {
			n, ok := keys[s.key]
			if !ok {
				continue
			}
			if n.Kind != yaml.ScalarNode || n.Value == "" {
				return nil, p.errf(n, "%q must be a non-empty string", s.key)
			}
			*s.dst = n.Value
		}
		if c.Compression != "" && !slices.Contains([]string{"off", "fastest", "auto", "better", "max"}, c.Compression) {
			return nil, p.errf(keys["compression"], "compression %q is not one of off, auto, fastest, better, max", c.Compression)
		}
		if c.Password != "" {
			if err := checkPasswordSpec(c.Password); err != nil {
				return nil, p.errf(keys["password"], "password: %v", err)
			}
		}
		if n, ok := keys["maintenance"]; ok {
			if err := p.maintenance(n, &c.Maintenance); err != nil {
				return nil, err
			}
		}
	}
	pn, ok := keys["project"]
	if !ok {
		return nil, p.errf(root, "the key \"project\" is required: it names your projects and what each includes")
	}
	if pn.Kind != yaml.MappingNode || len(pn.Content) == 0 {
		return nil, p.errf(pn, "\"project\" must not be empty: name at least one project with an include list")
	}
	for i := 0; i+1 < len(pn.Content); i += 2 {
		name, body := pn.Content[i], pn.Content[i+1]
		if _, dup := c.Projects[name.Value]; dup {
			return nil, p.errf(name, "project %q is given twice", name.Value)
		}
		if !validProjectName(name.Value) {
			return nil, p.errf(name, "project name %q: use letters, digits, '.', '_' and '-'", name.Value)
		}
		proj, err := p.project(c.Version, name, body)
		if err != nil {
			return nil, err
		}
		c.Projects[proj.Name] = proj
		c.Order = append(c.Order, proj.Name)
	}
	return c, nil
}

// firstBadLine finds the line a YAML syntax error starts at: the parser
// names the line of the block it was in, often lines above the mistake.
// A YAML document cut short after any line still parses as long as no
// mistake came before, so the first prefix that fails ends at the
// mistake. 0 when it cannot tell.
func firstBadLine(data []byte) int {
	lines := strings.SplitAfter(string(data), "\n")
	if len(lines) > 2000 {
		return 0
	}
	var doc yaml.Node
	for k := 1; k <= len(lines); k++ {
		if yaml.Unmarshal([]byte(strings.Join(lines[:k], "")), &doc) != nil {
			return k
		}
	}
	return 0
}

func validProjectName(s string) bool {
	if s == "" || s == "latest" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func (p *parser) project(version int, name, body *yaml.Node) (*Project, error) {
	proj := &Project{Name: name.Value, Line: name.Line}
	if body.Kind != yaml.MappingNode {
		return nil, p.errf(body, "project %q must be a mapping with an include list", name.Value)
	}
	allowed := []string{"include", "exclude"}
	if version == 2 {
		allowed = append(allowed, "keep", "cron", "hooks", "commands", "notify", "copy-to")
		allowed = append(allowed, selectionKeys...)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(body.Content); i += 2 {
		k, v := body.Content[i], body.Content[i+1]
		if seen[k.Value] {
			return nil, p.errf(k, "key %q is given twice in project %q", k.Value, name.Value)
		}
		seen[k.Value] = true
		switch {
		case k.Value == "include" || k.Value == "exclude":
			list, err := p.stringList(v, name.Value, k.Value)
			if err != nil {
				return nil, err
			}
			for _, e := range list {
				if version == 2 && k.Value == "exclude" {
					if !doublestar.ValidatePattern(filepath.ToSlash(e)) {
						return nil, p.errf(v, "project %q: exclude pattern %q is not a valid glob", name.Value, e)
					}
				}
			}
			if k.Value == "include" {
				proj.Include = list
			} else {
				proj.Exclude = list
			}
		case k.Value == "keep" && version == 2:
			keep, err := p.keep(v, name.Value)
			if err != nil {
				return nil, err
			}
			proj.Keep = keep
		case k.Value == "cron" && version == 2:
			sched, err := p.schedule(v, "project "+strconv.Quote(name.Value)+": cron")
			if err != nil {
				return nil, err
			}
			proj.Cron = sched
		case k.Value == "hooks" && version == 2:
			if err := p.hooks(v, name.Value, &proj.Hooks); err != nil {
				return nil, err
			}
		case k.Value == "commands" && version == 2:
			cmds, err := p.commands(v, name.Value)
			if err != nil {
				return nil, err
			}
			proj.Commands = cmds
		case k.Value == "notify" && version == 2:
			urls, err := p.urls(v, "project "+strconv.Quote(name.Value)+": notify")
			if err != nil {
				return nil, err
			}
			proj.Notify = urls
		case k.Value == "copy-to" && version == 2:
			targets, err := p.copyTo(v, name.Value)
			if err != nil {
				return nil, err
			}
			proj.CopyTo = targets
		case version == 2 && slices.Contains(selectionKeys, k.Value):
			if err := p.selection(k, v, name.Value, &proj.Select); err != nil {
				return nil, err
			}
		case version == 1 && (slices.Contains([]string{"keep", "cron", "hooks", "commands", "notify", "copy-to"}, k.Value) ||
			slices.Contains(selectionKeys, k.Value)):
			return nil, p.errf(k, "the key %q in project %q is not supported in version '1'; use version: '2'", k.Value, name.Value)
		default:
			return nil, p.errf(k, "unknown key %q in project %q (allowed here: %s)", k.Value, name.Value, strings.Join(allowed, ", "))
		}
	}
	if proj.Hooks.Timeout == 0 {
		proj.Hooks.Timeout = DefaultHookTimeout
	}
	if len(proj.Include) == 0 && len(proj.Commands) == 0 {
		return nil, p.errf(name, "project %q needs a non-empty \"include\" list", name.Value)
	}
	for _, c := range proj.Commands {
		for _, inc := range proj.Include {
			if within(c.Name, inc) {
				return nil, &Error{File: p.file, Line: c.Line, Msg: fmt.Sprintf("project %q: command output %q would lie inside the include %q: name it outside the includes", name.Value, c.Name, inc)}
			}
		}
	}
	return proj, nil
}

// within reports whether the slash path name (relative to the context)
// lies at or below the include inc, as far as the names alone tell.
func within(name, inc string) bool {
	if filepath.IsAbs(inc) {
		return false // the job's root is the context; an absolute include is elsewhere
	}
	i := path.Clean(filepath.ToSlash(inc))
	return i == "." || name == i || strings.HasPrefix(name, i+"/") || strings.HasPrefix(i, name+"/")
}

func (p *parser) stringList(v *yaml.Node, project, key string) ([]string, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, p.errf(v, "project %q: %q must be a list of paths", project, key)
	}
	var out []string
	for _, item := range v.Content {
		if item.Kind != yaml.ScalarNode || item.Tag == "!!null" || item.Value == "" {
			return nil, p.errf(item, "project %q: every %q entry must be a non-empty path", project, key)
		}
		if strings.ContainsRune(item.Value, 0) {
			return nil, p.errf(item, "project %q: path contains a NUL byte", project)
		}
		out = append(out, item.Value)
	}
	return out, nil
}

// selection reads one of the selectionKeys.
func (p *parser) selection(k, v *yaml.Node, project string, s *Selection) error {
	flag := func(dst *bool) error {
		if v.Kind != yaml.ScalarNode || (v.Value != "true" && v.Value != "false") {
			return p.errf(v, "project %q: %q is true or false", project, k.Value)
		}
		*dst = v.Value == "true"
		return nil
	}
	list := func(dst *[]string) error {
		l, err := p.stringList(v, project, k.Value)
		*dst = l
		return err
	}
	switch k.Value {
	case "iexclude":
		if err := list(&s.IExclude); err != nil {
			return err
		}
		for _, e := range s.IExclude {
			if !doublestar.ValidatePattern(filepath.ToSlash(e)) {
				return p.errf(v, "project %q: iexclude pattern %q is not a valid glob", project, e)
			}
		}
		return nil
	case "exclude-file":
		return list(&s.ExcludeFile)
	case "iexclude-file":
		return list(&s.IExcludeFile)
	case "exclude-if-present":
		return list(&s.ExcludeIfPresent)
	case "files-from":
		return list(&s.FilesFrom)
	case "exclude-caches":
		return flag(&s.ExcludeCaches)
	case "one-file-system":
		return flag(&s.OneFileSystem)
	case "exclude-larger-than":
		n, err := ParseSize(v.Value)
		if v.Kind != yaml.ScalarNode || err != nil || n == 0 {
			return p.errf(v, "project %q: exclude-larger-than %q: want a size such as 100M or 2G", project, v.Value)
		}
		s.ExcludeLargerThan = n
	}
	return nil
}

func (p *parser) keep(v *yaml.Node, project string) (*Keep, error) {
	if v.Kind != yaml.MappingNode {
		return nil, p.errf(v, "project %q: \"keep\" must be a mapping (last, hourly, daily, weekly, monthly, yearly, within, tags)", project)
	}
	k := &Keep{}
	ints := map[string]*int{"last": &k.Last, "hourly": &k.Hourly, "daily": &k.Daily, "weekly": &k.Weekly,
		"monthly": &k.Monthly, "yearly": &k.Yearly}
	for i := 0; i+1 < len(v.Content); i += 2 {
		key, val := v.Content[i], v.Content[i+1]
		if dst, ok := ints[key.Value]; ok {
			var n int
			if val.Kind != yaml.ScalarNode || val.Tag != "!!int" {
				return nil, p.errf(val, "project %q: keep.%s must be a whole number", project, key.Value)
			}
			if err := val.Decode(&n); err != nil || n < 0 {
				return nil, p.errf(val, "project %q: keep.%s must be a whole number ≥ 0", project, key.Value)
			}
			*dst = n
			continue
		}
		switch key.Value {
		case "within":
			d, err := ParseDuration(val.Value)
			if err != nil || val.Kind != yaml.ScalarNode {
				return nil, p.errf(val, "project %q: keep.within %q: want a duration like 7d, 12h or 1y2m", project, val.Value)
			}
			k.Within = d
		case "tags":
			list, err := p.stringList(val, project, "keep.tags")
			if err != nil {
				return nil, err
			}
			k.Tags = list
		default:
			return nil, p.errf(key, "unknown key %q in keep of project %q (allowed: last, hourly, daily, weekly, monthly, yearly, within, tags)", key.Value, project)
		}
	}
	return k, nil
}

// ParseDuration reads durations like 7d, 12h, 2w, 1y6m (y=365d, m=30d).
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty duration")
	}
	units := map[byte]time.Duration{'y': 365 * 24 * time.Hour, 'm': 30 * 24 * time.Hour, 'w': 7 * 24 * time.Hour,
		'd': 24 * time.Hour, 'h': time.Hour}
	var total time.Duration
	num := 0
	digits := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' {
			num = num*10 + int(c-'0')
			digits = true
			if num > 1e6 {
				return 0, fmt.Errorf("duration %q is too long", s)
			}
			continue
		}
		u, ok := units[c]
		if !ok || !digits {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		total += time.Duration(num) * u
		num, digits = 0, false
	}
	if digits {
		return 0, fmt.Errorf("duration %q lacks a unit (y, m, w, d, h)", s)
	}
	return total, nil
}

func (p *parser) schedule(v *yaml.Node, what string) (scheduler.Schedule, error) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		return scheduler.Schedule{}, p.errf(v, "%s must be a schedule in quotes, like '0 3 * * *' or '@daily'", what)
	}
	s, err := scheduler.Parse(v.Value)
	if err != nil {
		return scheduler.Schedule{}, p.errf(v, "%s: %v", what, err)
	}
	return s, nil
}

func (p *parser) commandList(v *yaml.Node, what string) ([]string, error) {
	if v.Kind == yaml.ScalarNode && v.Tag != "!!null" && v.Value != "" {
		return []string{v.Value}, nil
	}
	if v.Kind != yaml.SequenceNode {
		return nil, p.errf(v, "%s must be a list of shell commands", what)
	}
	var out []string
	for _, item := range v.Content {
		if item.Kind != yaml.ScalarNode || item.Tag == "!!null" || strings.TrimSpace(item.Value) == "" {
			return nil, p.errf(item, "%s: every entry must be a non-empty shell command", what)
		}
		out = append(out, item.Value)
	}
	return out, nil
}

func (p *parser) hooks(v *yaml.Node, project string, h *Hooks) error {
	if v.Kind != yaml.MappingNode {
		return p.errf(v, "project %q: \"hooks\" must be a mapping with before, after, failure (lists of shell commands) and timeout", project)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		key, val := v.Content[i], v.Content[i+1]
		if seen[key.Value] {
			return p.errf(key, "key %q is given twice in hooks of project %q", key.Value, project)
		}
		seen[key.Value] = true
		what := fmt.Sprintf("project %q: hooks.%s", project, key.Value)
		var err error
		switch key.Value {
		case "before":
			h.Before, err = p.commandList(val, what)
		case "after":
			h.After, err = p.commandList(val, what)
		case "failure":
			h.Failure, err = p.commandList(val, what)
		case "timeout":
			d, perr := time.ParseDuration(val.Value)
			if perr != nil || val.Kind != yaml.ScalarNode || d <= 0 {
				return p.errf(val, "%s %q: want a duration like 30s, 10m or 2h", what, val.Value)
			}
			h.Timeout = d
		default:
			return p.errf(key, "unknown key %q in hooks of project %q (allowed: before, after, failure, timeout)", key.Value, project)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) commands(v *yaml.Node, project string) ([]Command, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, p.errf(v, "project %q: \"commands\" must be a list of {name: FILE, run: COMMAND}", project)
	}
	var out []Command
	names := map[string]bool{}
	for _, item := range v.Content {
		if item.Kind != yaml.MappingNode {
			return nil, p.errf(item, "project %q: every command is a mapping {name: FILE, run: COMMAND}", project)
		}
		c := Command{Line: item.Line}
		for i := 0; i+1 < len(item.Content); i += 2 {
			key, val := item.Content[i], item.Content[i+1]
			if val.Kind != yaml.ScalarNode || val.Tag == "!!null" || strings.TrimSpace(val.Value) == "" {
				return nil, p.errf(val, "project %q: commands: %q must be a non-empty string", project, key.Value)
			}
			switch key.Value {
			case "name":
				c.Name = val.Value
			case "run":
				c.Run = val.Value
			default:
				return nil, p.errf(key, "unknown key %q in a command of project %q (allowed: name, run)", key.Value, project)
			}
		}
		if c.Name == "" || c.Run == "" {
			return nil, p.errf(item, "project %q: a command needs both name (the file it becomes) and run (the shell command)", project)
		}
		if err := CheckStreamName(c.Name); err != nil {
			return nil, p.errf(item, "project %q: command name %v", project, err)
		}
		if names[c.Name] {
			return nil, p.errf(item, "project %q: two commands are named %q", project, c.Name)
		}
		names[c.Name] = true
		out = append(out, c)
	}
	return out, nil
}

// CheckStreamName checks the name a command's output is stored under: a
// relative slash path without "." or ".." elements.
func CheckStreamName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.ContainsRune(name, 0) || strings.Contains(name, "\\") {
		return fmt.Errorf("%q: want a relative path like db/site.sql", name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == "" || el == "." || el == ".." {
			return fmt.Errorf("%q: want a relative path like db/site.sql, without empty, '.' or '..' parts", name)
		}
	}
	return nil
}

func (p *parser) urls(v *yaml.Node, what string) ([]string, error) {
	list := v.Content
	if v.Kind == yaml.ScalarNode {
		list = []*yaml.Node{v}
	} else if v.Kind != yaml.SequenceNode {
		return nil, p.errf(v, "%s must be a list of URLs", what)
	}
	var out []string
	for _, item := range list {
		u, err := url.Parse(item.Value)
		if item.Kind != yaml.ScalarNode || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, p.errf(item, "%s: %q is not an http:// or https:// URL", what, item.Value)
		}
		out = append(out, item.Value)
	}
	return out, nil
}

func (p *parser) copyTo(v *yaml.Node, project string) ([]CopyTarget, error) {
	list := v.Content
	if v.Kind == yaml.ScalarNode {
		list = []*yaml.Node{v}
	} else if v.Kind != yaml.SequenceNode {
		return nil, p.errf(v, "project %q: \"copy-to\" must be a list of repositories", project)
	}
	var out []CopyTarget
	for _, item := range list {
		var t CopyTarget
		switch item.Kind {
		case yaml.ScalarNode:
			t.Repository = item.Value
		case yaml.MappingNode:
			for i := 0; i+1 < len(item.Content); i += 2 {
				key, val := item.Content[i], item.Content[i+1]
				if val.Kind != yaml.ScalarNode || val.Value == "" {
					return nil, p.errf(val, "project %q: copy-to: %q must be a non-empty string", project, key.Value)
				}
				switch key.Value {
				case "repository":
					t.Repository = val.Value
				case "password":
					if err := checkPasswordSpec(val.Value); err != nil {
						return nil, p.errf(val, "project %q: copy-to password: %v", project, err)
					}
					t.Password = val.Value
				default:
					return nil, p.errf(key, "unknown key %q in copy-to of project %q (allowed: repository, password)", key.Value, project)
				}
			}
		}
		if strings.TrimSpace(t.Repository) == "" {
			return nil, p.errf(item, "project %q: copy-to needs a repository (a path, sftp://… or s3://…)", project)
		}
		out = append(out, t)
	}
	return out, nil
}

func (p *parser) maintenance(v *yaml.Node, m *Maintenance) error {
	if v.Kind != yaml.MappingNode {
		return p.errf(v, "\"maintenance\" must be a mapping (forget, check, notify)")
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		key, val := v.Content[i], v.Content[i+1]
		var err error
		switch key.Value {
		case "forget":
			m.Forget, err = p.schedule(val, "maintenance.forget")
		case "check":
			if val.Kind != yaml.MappingNode {
				m.Check, err = p.schedule(val, "maintenance.check")
				break
			}
			for j := 0; j+1 < len(val.Content); j += 2 {
				ck, cv := val.Content[j], val.Content[j+1]
				switch ck.Value {
				case "cron":
					m.Check, err = p.schedule(cv, "maintenance.check.cron")
				case "read-data-subset":
					if cv.Kind != yaml.ScalarNode || !validSubset(cv.Value) {
						return p.errf(cv, "maintenance.check.read-data-subset %q: want a percentage like 5%% or a part like 1/10", cv.Value)
					}
					m.ReadDataSubset = cv.Value
				default:
					return p.errf(ck, "unknown key %q in maintenance.check (allowed: cron, read-data-subset)", ck.Value)
				}
				if err != nil {
					return err
				}
			}
			if m.Check.IsZero() {
				return p.errf(val, "maintenance.check needs a cron schedule")
			}
		case "notify":
			m.Notify, err = p.urls(val, "maintenance.notify")
		default:
			return p.errf(key, "unknown key %q in maintenance (allowed: forget, check, notify)", key.Value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// validSubset accepts "5%" or "n/t" with 1 ≤ n ≤ t.
func validSubset(s string) bool {
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(pct, 64)
		return err == nil && f > 0 && f <= 100
	}
	a, b, ok := strings.Cut(s, "/")
	n, err1 := strconv.Atoi(a)
	t, err2 := strconv.Atoi(b)
	return ok && err1 == nil && err2 == nil && n >= 1 && n <= t
}
