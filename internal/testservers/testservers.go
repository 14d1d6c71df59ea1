// Package testservers starts real storage servers on 127.0.0.1 for tests:
// versitygw (an S3 gateway) and OpenSSH's sshd. No mocks stand in for them.
// Only tests import this package.
package testservers

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

// proc is a server process and the signal of its end.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *strings.Builder
}

func startProc(t testing.TB, addr string, name string, args ...string) *proc {
	return startCmd(t, addr, exec.Command(name, args...))
}

// startCmd starts a server and waits until it listens on addr.
func startCmd(t testing.TB, addr string, cmd *exec.Cmd) *proc {
	name := filepath.Base(cmd.Path)
	p := &proc{cmd: cmd, done: make(chan struct{}), log: &strings.Builder{}}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before listening on %s:\n%s", name, addr, p.log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not start listening on %s:\n%s", name, addr, p.log.String())
	return nil
}

// stop kills the process and waits for its end.
func (p *proc) stop() {
	if p == nil {
		return
	}
	p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

func findBinary(t testing.TB, name, install string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	for _, p := range []string{filepath.Join(strings.TrimSpace(string(gopath)), "bin", name), "/usr/sbin/" + name} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("%s is not installed; the remote-storage tests need the real server: %s (scripts/install-test-deps.sh does it)", name, install)
	return ""
}

// S3 is a running versitygw.
type S3 struct {
	t       testing.TB
	bin     string
	Addr    string
	Access  string
	Secret  string
	dataDir string
	p       *proc
}

// StartS3 starts versitygw with a posix backend in a temporary directory.
func StartS3(t testing.TB) *S3 {
	s := &S3{t: t, bin: findBinary(t, "versitygw", "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"),
		Addr: "127.0.0.1:" + freePort(t), Access: "runupaccess", Secret: "runupsecret0123456789", dataDir: t.TempDir()}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start (re)starts the server on its address and data.
func (s *S3) Start() {
	s.p = startProc(s.t, s.Addr, s.bin, "--access", s.Access, "--secret", s.Secret, "--port", s.Addr, "posix", s.dataDir)
}

// Stop kills the server, as an outage would.
func (s *S3) Stop() { s.p.stop() }

// Freeze stops the server without closing its connections, as a server
// that hangs would (SIGSTOP); Thaw lets it go on. The test's cleanup
// thaws it.
func (s *S3) Freeze() { freezeTree(s.t, s.p.cmd.Process.Pid) }

// Thaw undoes Freeze.
func (s *S3) Thaw() { thawTree(s.p.cmd.Process.Pid) }

// Env holds the credentials the way AWS tools take them.
func (s *S3) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.Access, "AWS_SECRET_ACCESS_KEY=" + s.Secret}
}

// URL is a RunUp location for a bucket and prefix; the bucket is created.
func (s *S3) URL(bucket, prefix string) string {
	c, err := minio.New(s.Addr, &minio.Options{Creds: credentials.NewStaticV4(s.Access, s.Secret, ""), Secure: false})
	if err != nil {
		s.t.Fatal(err)
	}
	ctx := context.Background()
	if ok, _ := c.BucketExists(ctx, bucket); !ok {
		if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
			s.t.Fatalf("make bucket: %v", err)
		}
	}
	return fmt.Sprintf("s3://%s/%s/%s?http=1&path-style=1", s.Addr, bucket, prefix)
}

// SSHD is a running OpenSSH server with the SFTP subsystem.
type SSHD struct {
	t    testing.TB
	bin  string
	Port string
	// Home holds .ssh with the client key and known_hosts: run clients
	// with HOME set to it.
	Home string
	User string
	conf string
	p    *proc
}

// StartSSHD starts sshd on a free port with generated host and client keys.
func StartSSHD(t testing.TB) *SSHD {
	s := &SSHD{t: t, bin: findBinary(t, "sshd", "apt-get install openssh-server"), Port: freePort(t), Home: t.TempDir()}
	keygen := findBinary(t, "ssh-keygen", "apt-get install openssh-client")
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	s.User = u.Username
	dir := t.TempDir()
	sshDir := filepath.Join(s.Home, ".ssh")
	os.MkdirAll(sshDir, 0o700)
	for _, k := range []struct{ path, comment string }{
		{filepath.Join(dir, "host_ed25519"), "host"},
		{filepath.Join(sshDir, "id_ed25519"), "client"},
	} {
		if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", k.comment, "-f", k.path).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
	}
	hostPub, _ := os.ReadFile(filepath.Join(dir, "host_ed25519.pub"))
	clientPub, _ := os.ReadFile(filepath.Join(sshDir, "id_ed25519.pub"))
	os.WriteFile(filepath.Join(dir, "authorized_keys"), clientPub, 0o600)
	os.WriteFile(filepath.Join(sshDir, "known_hosts"), []byte(fmt.Sprintf("[127.0.0.1]:%s %s", s.Port, hostPub)), 0o600)
	os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	s.conf = filepath.Join(dir, "sshd_config")
	conf := fmt.Sprintf(`Port %s
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PidFile %s
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
Subsystem sftp internal-sftp
`, s.Port, filepath.Join(dir, "host_ed25519"), filepath.Join(dir, "authorized_keys"), filepath.Join(dir, "sshd.pid"))
	os.WriteFile(s.conf, []byte(conf), 0o600)
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start (re)starts sshd.
func (s *SSHD) Start() {
	s.p = startProc(s.t, "127.0.0.1:"+s.Port, s.bin, "-D", "-e", "-f", s.conf)
}

// Stop kills sshd and its sessions, as an outage would. Sessions run in
// child processes that outlive the listener, so the whole tree goes; other
// servers' sessions are left alone.
func (s *SSHD) Stop() {
	if s.p == nil {
		return
	}
	killDescendants(s.p.cmd.Process.Pid)
	s.p.stop()
}

// Freeze stops sshd and its sessions without closing their connections,
// as a server that hangs would; Thaw lets them go on.
func (s *SSHD) Freeze() { freezeTree(s.t, s.p.cmd.Process.Pid) }

// Thaw undoes Freeze.
func (s *SSHD) Thaw() { thawTree(s.p.cmd.Process.Pid) }

// URL is a RunUp location for a directory on the server.
func (s *SSHD) URL(dir string) string {
	return fmt.Sprintf("sftp://%s@127.0.0.1:%s%s", s.User, s.Port, dir)
}
