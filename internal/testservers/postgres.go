package testservers

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
)

// Postgres is a running PostgreSQL server, started for a test in a
// temporary data directory and reached over TCP on 127.0.0.1 with trust
// authentication as the user "postgres".
type Postgres struct {
	Bin  string // the directory of pg_dump, psql, createdb
	Port string
	p    *proc
}

// pgBinDir finds the server's programs: Debian keeps them out of PATH.
func pgBinDir(t testing.TB) string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i]
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	t.Fatal("PostgreSQL is not installed; the database dump tests need the real server: apt-get install postgresql (scripts/install-test-deps.sh does it)")
	return ""
}

// StartPostgres initialises a cluster and starts its server. PostgreSQL
// refuses to run as root: then it runs as the system user "postgres".
func StartPostgres(t testing.TB) *Postgres {
	bin := pgBinDir(t)
	pg := &Postgres{Bin: bin, Port: freePort(t)}
	// Not t.TempDir: the server's user must be able to reach the folder.
	base, err := os.MkdirTemp("", "runup-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	data, sock := filepath.Join(base, "data"), filepath.Join(base, "sock")
	var as []string
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal("PostgreSQL cannot run as root and there is no user \"postgres\" to run it as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		os.Chmod(base, 0o755)
		for _, d := range []string{data, sock} {
			os.Mkdir(d, 0o700)
			os.Chown(d, uid, gid)
		}
		as = []string{"setpriv", "--reuid=" + u.Uid, "--regid=" + u.Gid, "--init-groups", "--"}
	}
	run := func(args ...string) *exec.Cmd {
		args = append(as, args...)
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = base
		return cmd
	}
	if out, err := run(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	cmd := run(filepath.Join(bin, "postgres"), "-D", data, "-p", pg.Port, "-k", sock, "-h", "127.0.0.1",
		"-c", "fsync=off", "-c", "full_page_writes=off")
	pg.p = startCmd(t, "127.0.0.1:"+pg.Port, cmd)
	t.Cleanup(pg.p.stop)
	return pg
}

// Env is what a client needs to reach the server.
func (pg *Postgres) Env() []string {
	return []string{"PGHOST=127.0.0.1", "PGPORT=" + pg.Port, "PGUSER=postgres",
		"PATH=" + pg.Bin + string(os.PathListSeparator) + os.Getenv("PATH")}
}

// Run runs a client program (psql, createdb, …) against the server.
func (pg *Postgres) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(pg.Bin, name), args...)
	cmd.Env = append(os.Environ(), pg.Env()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}
