// Package sftp stores a repository on another host over SSH, with the
// server's own SFTP subsystem (OpenSSH's sftp-server or internal-sftp).
//
// Authentication uses the SSH agent and the usual key files; host keys are
// checked against known_hosts, and an unknown or changed key is an error,
// never accepted. Writes go to a temporary file that is fsynced
// (fsync@openssh.com) and renamed: OpenSSH renames by link and unlink, so a
// rename onto an existing file fails, which gives write-once semantics.
//
// Every request has a deadline, and the connection a keepalive: a server
// that stops answering (frozen, not refusing) costs one timeout, after
// which the connection is dropped and the next request dials again.
package sftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kevinburke/ssh_config"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/runup/runup/internal/backend"
)

// Config is a parsed sftp:// location.
type Config struct {
	User, Host, Port, Path string
	// Timeout bounds how long a request may make no progress (0:
	// backend.DefaultTimeout).
	Timeout time.Duration
}

// ParseURL reads sftp://[user@]host[:port]/path. Host may be an alias of
// ~/.ssh/config, whose HostName, Port, User and IdentityFile apply.
func ParseURL(s string) (Config, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "sftp" || u.Hostname() == "" || u.Path == "" {
		return Config{}, fmt.Errorf("repository %q: want sftp://user@host[:port]/path", s)
	}
	c := Config{Host: u.Hostname(), Port: u.Port(), Path: u.Path}
	if u.User != nil {
		c.User = u.User.Username()
	}
	return c, nil
}

// Backend is a repository directory on an SFTP server.
type Backend struct {
	cfg     Config
	root    string
	addr    string
	conf    *ssh.ClientConfig
	timeout time.Duration

	mu  sync.Mutex
	cur *conn // nil or dead: the next request dials
}

// conn is one SSH connection and its SFTP session.
type conn struct {
	ssh     *ssh.Client
	c       *sftp.Client
	dead    atomic.Bool
	stalled atomic.Bool // dropped because the server stopped answering
	done    chan struct{}
}

// stall drops a connection whose server stopped answering.
func (cn *conn) stall() {
	cn.stalled.Store(true)
	cn.kill()
}

// kill drops the connection: every request on it fails at once.
func (cn *conn) kill() {
	cn.dead.Store(true)
	cn.ssh.Close()
}

var _ backend.Backend = (*Backend)(nil)

func sshDir() string {
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".ssh")
}

// Open connects and authenticates. It does not create anything.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	alias := cfg.Host
	host := ssh_config.Get(alias, "HostName")
	if host == "" {
		host = alias
	}
	port := cfg.Port
	if port == "" {
		port = ssh_config.Get(alias, "Port")
	}
	if port == "" {
		port = "22"
	}
	user := cfg.User
	if user == "" {
		user = ssh_config.Get(alias, "User")
	}
	if user == "" {
		user = os.Getenv("USER")
	}
	var auths []ssh.AuthMethod
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if conn, err := net.Dial("unix", sock); err == nil {
			auths = append(auths, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
		}
	}
	var signers []ssh.Signer
	files := []string{}
	for _, f := range ssh_config.GetAll(alias, "IdentityFile") {
		if strings.HasPrefix(f, "~/") {
			home, _ := os.UserHomeDir()
			f = filepath.Join(home, f[2:])
		}
		files = append(files, f)
	}
	for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		files = append(files, filepath.Join(sshDir(), name))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if s, err := ssh.ParsePrivateKey(b); err == nil {
			signers = append(signers, s) // keys with a passphrase need the agent
		}
	}
	if len(signers) > 0 {
		auths = append(auths, ssh.PublicKeys(signers...))
	}
	if len(auths) == 0 {
		return nil, fmt.Errorf("sftp %s: no SSH agent and no usable key in %s", alias, sshDir())
	}
	khFiles := []string{}
	for _, f := range []string{filepath.Join(sshDir(), "known_hosts"), "/etc/ssh/ssh_known_hosts"} {
		if _, err := os.Stat(f); err == nil {
			khFiles = append(khFiles, f)
		}
	}
	if len(khFiles) == 0 {
		return nil, fmt.Errorf("sftp %s: no known_hosts file: connect once with ssh to check and record the host key", alias)
	}
	hostKeys, err := knownhosts.New(khFiles...)
	if err != nil {
		return nil, fmt.Errorf("sftp %s: known_hosts: %w", alias, err)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = backend.DefaultTimeout
	}
	b := &Backend{cfg: cfg, root: path.Clean(cfg.Path), addr: net.JoinHostPort(host, port), timeout: timeout,
		conf: &ssh.ClientConfig{User: user, Auth: auths, HostKeyCallback: hostKeys, Timeout: min(timeout, 30*time.Second),
			// AES-GCM first: with the CPU's AES instructions it moves packs
			// several times faster than ChaCha20, the library's first choice.
			Config: ssh.Config{Ciphers: []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
				"chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr"}}}}
	cn, err := b.dial(ctx)
	if err != nil {
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			if len(ke.Want) == 0 {
				return nil, fmt.Errorf("sftp %s: the host key is unknown: check it and add it to %s (ssh -p %s %s@%s does this)", b.addr, khFiles[0], port, user, host)
			}
			return nil, fmt.Errorf("sftp %s: THE HOST KEY HAS CHANGED since it was recorded in %s:%d: someone may be intercepting the connection; refusing", b.addr, ke.Want[0].Filename, ke.Want[0].Line)
		}
		return nil, err
	}
	b.cur = cn
	return b, nil
}

// dial connects, starts the SFTP session and its keepalive.
func (b *Backend) dial(ctx context.Context) (*conn, error) {
	d := net.Dialer{Timeout: b.conf.Timeout}
	nc, err := d.DialContext(ctx, "tcp", b.addr)
	if err != nil {
		return nil, fmt.Errorf("sftp %s: %w", b.addr, err)
	}
	// The handshake gets a deadline too: a frozen server accepts
	// connections but never answers.
	_ = nc.SetDeadline(time.Now().Add(b.timeout))
	sc, chans, reqs, err := ssh.NewClientConn(nc, b.addr, b.conf)
	if err != nil {
		nc.Close()
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			return nil, err
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("%w for %v: the server stopped answering: %w", backend.ErrStalled, b.timeout, err)
		}
		return nil, fmt.Errorf("sftp %s@%s: %w", b.conf.User, b.addr, err)
	}
	client := ssh.NewClient(sc, chans, reqs)
	cn := &conn{ssh: client, done: make(chan struct{})}
	start := time.AfterFunc(b.timeout, cn.stall)
	c, err := sftp.NewClient(client, sftp.UseConcurrentWrites(true))
	if !start.Stop() || err != nil {
		client.Close()
		if err == nil {
			err = fmt.Errorf("%w for %v", backend.ErrStalled, b.timeout)
		}
		return nil, fmt.Errorf("sftp %s: start the sftp subsystem: %w", b.addr, err)
	}
	_ = nc.SetDeadline(time.Time{})
	cn.c = c
	go func() {
		_ = c.Wait()
		cn.dead.Store(true)
		close(cn.done)
	}()
	go b.keepalive(cn)
	return cn, nil
}

// keepalive asks the server for a sign of life; a server that gives none
// within the timeout has its connection dropped, which fails whatever was
// waiting on it.
func (b *Backend) keepalive(cn *conn) {
	every := min(b.timeout/2, 15*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-cn.done:
			return
		case <-t.C:
		}
		kill := time.AfterFunc(b.timeout, cn.stall)
		_, _, err := cn.ssh.SendRequest("keepalive@openssh.com", true, nil)
		kill.Stop()
		if err != nil {
			cn.kill()
			return
		}
	}
}

// minRate is the slowest transfer a request may make before it counts as
// stalled, on top of the timeout.
const minRate = 16 << 10

// begin returns the live connection's client, dialling again if the last
// one died, and a function that ends the request: it stops the request's
// deadline and turns a stall into backend.ErrStalled. pkg/sftp takes no
// contexts, so a deadline drops the connection, which fails the request.
func (b *Backend) begin(ctx context.Context, size int64) (*sftp.Client, func(error) error, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	b.mu.Lock()
	cn := b.cur
	if cn == nil || cn.dead.Load() {
		var err error
		if cn, err = b.dial(ctx); err != nil {
			b.mu.Unlock()
			return nil, nil, err
		}
		b.cur = cn
	}
	b.mu.Unlock()
	d := b.timeout + time.Duration(size/minRate)*time.Second
	t := time.AfterFunc(d, cn.stall)
	stop := context.AfterFunc(ctx, cn.kill)
	return cn.c, func(err error) error {
		t.Stop()
		stop()
		if err != nil && cn.stalled.Load() {
			return fmt.Errorf("%w for %v: the server stopped answering: %w", backend.ErrStalled, d, err)
		}
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}, nil
}

// Create makes the repository's directories.
func (b *Backend) Create() error {
	c, end, err := b.begin(context.Background(), 0)
	if err != nil {
		return err
	}
	return end(b.create(c))
}

func (b *Backend) create(c *sftp.Client) error {
	if err := c.MkdirAll(b.root); err != nil {
		return fmt.Errorf("sftp: create %s: %w", b.root, err)
	}
	if err := c.Chmod(b.root, 0o700); err != nil {
		return fmt.Errorf("sftp: create %s: %w", b.root, err)
	}
	for _, t := range backend.AllTypes {
		if t == backend.Config {
			continue
		}
		if err := c.MkdirAll(path.Join(b.root, string(t))); err != nil {
			return fmt.Errorf("sftp: create %s: %w", path.Join(b.root, string(t)), err)
		}
		if err := c.Chmod(path.Join(b.root, string(t)), 0o700); err != nil {
			return fmt.Errorf("sftp: create %s: %w", path.Join(b.root, string(t)), err)
		}
	}
	return nil
}

// Location implements backend.Backend.
func (b *Backend) Location() string {
	u := url.URL{Scheme: "sftp", Host: b.cfg.Host, Path: b.root}
	if b.cfg.Port != "" {
		u.Host += ":" + b.cfg.Port
	}
	if b.cfg.User != "" {
		u.User = url.User(b.cfg.User)
	}
	return u.String()
}

func (b *Backend) path(h backend.Handle) string {
	return path.Join(b.root, backend.Path(h))
}

func wrap(what string, err error) error {
	var se *sftp.StatusError
	if errors.Is(err, fs.ErrNotExist) || errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxNoSuchFile {
		return fmt.Errorf("%s: %w", what, backend.ErrNotExist)
	}
	if errors.Is(err, fs.ErrPermission) || errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxPermissionDenied {
		return fmt.Errorf("%s: %w: %w", what, backend.ErrReadOnly, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, data []byte) error {
	return b.SaveReader(ctx, h, bytes.NewReader(data), int64(len(data)))
}

// SaveReader implements backend.ReaderSaver.
func (b *Backend) SaveReader(ctx context.Context, h backend.Handle, r io.ReaderAt, size int64) error {
	c, end, err := b.begin(ctx, size)
	if err != nil {
		return err
	}
	return end(b.save(c, h, io.NewSectionReader(r, 0, size)))
}

func (b *Backend) save(c *sftp.Client, h backend.Handle, data io.Reader) error {
	final := b.path(h)
	dir := path.Dir(final)
	if h.Type == backend.Data {
		if _, err := c.Stat(dir); err != nil {
			if err := c.MkdirAll(dir); err != nil {
				return wrap(fmt.Sprintf("save %v", h), err)
			}
			_ = c.Chmod(dir, 0o700)
		}
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := path.Join(dir, "."+path.Base(final)+".tmp-"+hex.EncodeToString(rnd[:]))
	if err := writeFile(c, tmp, data); err != nil {
		return wrap(fmt.Sprintf("save %v", h), err)
	}
	if err := c.Rename(tmp, final); err != nil {
		_ = c.Remove(tmp)
		if _, serr := c.Stat(final); serr == nil {
			return fmt.Errorf("save %v: %w", h, backend.ErrExists)
		}
		return wrap(fmt.Sprintf("save %v", h), err)
	}
	return nil
}

// writeFile writes a new file durably, readable by its owner alone: mode
// 0600 from before its first byte (the server's default mode is often
// world-readable), 0400 once complete, as repository files never change.
func writeFile(c *sftp.Client, name string, data io.Reader) error {
	f, err := c.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	werr := f.Chmod(0o600)
	if werr == nil {
		_, werr = f.ReadFrom(data)
	}
	if werr == nil {
		// fsync@openssh.com; servers without it cannot promise durability.
		if err := f.Sync(); err != nil && !strings.Contains(err.Error(), "extension") {
			werr = err
		}
	}
	if werr == nil {
		werr = f.Chmod(0o400)
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = c.Remove(name)
	}
	return werr
}

// Replace implements backend.Replacer with OpenSSH's posix-rename, which
// replaces the target atomically.
func (b *Backend) Replace(ctx context.Context, h backend.Handle, data []byte) error {
	c, end, err := b.begin(ctx, int64(len(data)))
	if err != nil {
		return err
	}
	final := b.path(h)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := path.Join(path.Dir(final), "."+path.Base(final)+".tmp-"+hex.EncodeToString(rnd[:]))
	if err := writeFile(c, tmp, bytes.NewReader(data)); err != nil {
		return end(wrap(fmt.Sprintf("replace %v", h), err))
	}
	if err := c.PosixRename(tmp, final); err != nil {
		_ = c.Remove(tmp)
		return end(wrap(fmt.Sprintf("replace %v", h), err))
	}
	return end(nil)
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, offset, length int64) ([]byte, error) {
	size := length
	if size == 0 {
		size = 32 << 20 // a whole file, at most a pack: a generous deadline
	}
	c, end, err := b.begin(ctx, size)
	if err != nil {
		return nil, err
	}
	data, err := b.load(c, h, offset, length)
	return data, end(err)
}

func (b *Backend) load(c *sftp.Client, h backend.Handle, offset, length int64) ([]byte, error) {
	f, err := c.Open(b.path(h))
	if err != nil {
		return nil, wrap(fmt.Sprintf("load %v", h), err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, wrap(fmt.Sprintf("load %v", h), err)
	}
	if err := backend.CheckRange(h, fi.Size(), offset, length); err != nil {
		return nil, err
	}
	if length == 0 {
		length = fi.Size() - offset
	}
	buf := make([]byte, length)
	if _, err := f.ReadAt(buf, offset); err != nil && !(errors.Is(err, io.EOF) && length == 0) {
		return nil, wrap(fmt.Sprintf("load %v", h), err)
	}
	return buf, nil
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	c, end, err := b.begin(ctx, 0)
	if err != nil {
		return backend.FileInfo{}, err
	}
	fi, err := c.Stat(b.path(h))
	if err := end(err); err != nil {
		return backend.FileInfo{}, wrap(fmt.Sprintf("stat %v", h), err)
	}
	return backend.FileInfo{Name: h.Name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List implements backend.Backend.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	dir := path.Join(b.root, string(t))
	dirs := []string{dir}
	readDir := func(d string) ([]fs.FileInfo, error) {
		c, end, err := b.begin(ctx, 0)
		if err != nil {
			return nil, err
		}
		entries, err := c.ReadDirContext(ctx, d)
		return entries, end(err)
	}
	if t == backend.Data {
		subs, err := readDir(dir)
		if err != nil {
			if errors.Is(wrap("", err), backend.ErrNotExist) {
				return nil
			}
			return wrap("list "+string(t), err)
		}
		dirs = dirs[:0]
		for _, s := range subs {
			if s.IsDir() && len(s.Name()) == 2 {
				dirs = append(dirs, path.Join(dir, s.Name()))
			}
		}
	}
	for _, d := range dirs {
		entries, err := readDir(d)
		if err != nil {
			if errors.Is(wrap("", err), backend.ErrNotExist) {
				continue
			}
			return wrap("list "+d, err)
		}
		for _, e := range entries {
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if err := fn(backend.FileInfo{Name: e.Name(), Size: e.Size(), ModTime: e.ModTime()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	c, end, err := b.begin(ctx, 0)
	if err != nil {
		return err
	}
	if err := end(c.Remove(b.path(h))); err != nil && !errors.Is(wrap("", err), backend.ErrNotExist) {
		return wrap(fmt.Sprintf("remove %v", h), err)
	}
	return nil
}

// Close implements backend.Backend.
func (b *Backend) Close() error {
	b.mu.Lock()
	cn := b.cur
	b.cur = nil
	b.mu.Unlock()
	if cn == nil {
		return nil
	}
	cerr := cn.c.Close()
	if err := cn.ssh.Close(); cerr == nil && !errors.Is(err, net.ErrClosed) {
		cerr = err
	}
	return cerr
}
