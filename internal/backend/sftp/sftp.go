// Package sftp stores a repository on another host over SSH, with the
// server's own SFTP subsystem (OpenSSH's sftp-server or internal-sftp).
//
// Authentication uses the SSH agent and the usual key files; host keys are
// checked against known_hosts, and an unknown or changed key is an error,
// never accepted. Writes go to a temporary file that is fsynced
// (fsync@openssh.com) and renamed: OpenSSH renames by link and unlink, so a
// rename onto an existing file fails, which gives write-once semantics.
package sftp

import (
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
	cfg  Config
	ssh  *ssh.Client
	c    *sftp.Client
	root string
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
	addr := net.JoinHostPort(host, port)
	conf := &ssh.ClientConfig{User: user, Auth: auths, HostKeyCallback: hostKeys, Timeout: 20 * time.Second}
	d := net.Dialer{Timeout: 20 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sftp %s: %w", addr, err)
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, conf)
	if err != nil {
		conn.Close()
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			if len(ke.Want) == 0 {
				return nil, fmt.Errorf("sftp %s: the host key is unknown: check it and add it to %s (ssh -p %s %s@%s does this)", addr, khFiles[0], port, user, host)
			}
			return nil, fmt.Errorf("sftp %s: THE HOST KEY HAS CHANGED since it was recorded in %s:%d: someone may be intercepting the connection; refusing", addr, ke.Want[0].Filename, ke.Want[0].Line)
		}
		return nil, fmt.Errorf("sftp %s@%s: %w", user, addr, err)
	}
	client := ssh.NewClient(sc, chans, reqs)
	c, err := sftp.NewClient(client, sftp.UseConcurrentWrites(true))
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("sftp %s: start the sftp subsystem: %w", addr, err)
	}
	return &Backend{cfg: cfg, ssh: client, c: c, root: path.Clean(cfg.Path)}, nil
}

// Create makes the repository's directories.
func (b *Backend) Create() error {
	if err := b.c.MkdirAll(b.root); err != nil {
		return fmt.Errorf("sftp: create %s: %w", b.root, err)
	}
	if err := b.c.Chmod(b.root, 0o700); err != nil {
		return fmt.Errorf("sftp: create %s: %w", b.root, err)
	}
	for _, t := range backend.AllTypes {
		if t == backend.Config {
			continue
		}
		if err := b.c.MkdirAll(path.Join(b.root, string(t))); err != nil {
			return fmt.Errorf("sftp: create %s: %w", path.Join(b.root, string(t)), err)
		}
		if err := b.c.Chmod(path.Join(b.root, string(t)), 0o700); err != nil {
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
	return fmt.Errorf("%s: %w", what, err)
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	final := b.path(h)
	dir := path.Dir(final)
	if h.Type == backend.Data {
		if _, err := b.c.Stat(dir); err != nil {
			if err := b.c.MkdirAll(dir); err != nil {
				return wrap(fmt.Sprintf("save %v", h), err)
			}
			_ = b.c.Chmod(dir, 0o700)
		}
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := path.Join(dir, "."+path.Base(final)+".tmp-"+hex.EncodeToString(rnd[:]))
	if err := b.writeFile(tmp, data); err != nil {
		return wrap(fmt.Sprintf("save %v", h), err)
	}
	if err := b.c.Rename(tmp, final); err != nil {
		_ = b.c.Remove(tmp)
		if _, serr := b.c.Stat(final); serr == nil {
			return fmt.Errorf("save %v: %w", h, backend.ErrExists)
		}
		return wrap(fmt.Sprintf("save %v", h), err)
	}
	return nil
}

// writeFile writes a new file durably, readable by its owner alone: mode
// 0600 from before its first byte (the server's default mode is often
// world-readable), 0400 once complete, as repository files never change.
func (b *Backend) writeFile(name string, data []byte) error {
	f, err := b.c.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	werr := f.Chmod(0o600)
	if werr == nil {
		_, werr = f.Write(data)
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
		_ = b.c.Remove(name)
	}
	return werr
}

// Replace implements backend.Replacer with OpenSSH's posix-rename, which
// replaces the target atomically.
func (b *Backend) Replace(ctx context.Context, h backend.Handle, data []byte) error {
	final := b.path(h)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := path.Join(path.Dir(final), "."+path.Base(final)+".tmp-"+hex.EncodeToString(rnd[:]))
	if err := b.writeFile(tmp, data); err != nil {
		return wrap(fmt.Sprintf("replace %v", h), err)
	}
	if err := b.c.PosixRename(tmp, final); err != nil {
		_ = b.c.Remove(tmp)
		return wrap(fmt.Sprintf("replace %v", h), err)
	}
	return nil
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, offset, length int64) ([]byte, error) {
	f, err := b.c.Open(b.path(h))
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
	fi, err := b.c.Stat(b.path(h))
	if err != nil {
		return backend.FileInfo{}, wrap(fmt.Sprintf("stat %v", h), err)
	}
	return backend.FileInfo{Name: h.Name, Size: fi.Size()}, nil
}

// List implements backend.Backend.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	dir := path.Join(b.root, string(t))
	dirs := []string{dir}
	if t == backend.Data {
		subs, err := b.c.ReadDirContext(ctx, dir)
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
		entries, err := b.c.ReadDirContext(ctx, d)
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
			if err := fn(backend.FileInfo{Name: e.Name(), Size: e.Size()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if err := b.c.Remove(b.path(h)); err != nil && !errors.Is(wrap("", err), backend.ErrNotExist) {
		return wrap(fmt.Sprintf("remove %v", h), err)
	}
	return nil
}

// Close implements backend.Backend.
func (b *Backend) Close() error {
	cerr := b.c.Close()
	if err := b.ssh.Close(); cerr == nil {
		cerr = err
	}
	return cerr
}
