// Package s3 stores a repository in an S3-compatible object store (AWS S3,
// MinIO, Ceph RGW, Backblaze B2, Wasabi, versitygw, …).
//
// Objects are written whole with PutObject, which a store makes visible
// only when complete; write-once files use If-None-Match: * so that a second
// writer of the same name loses, as on a local disk. Reads are ranged.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/runup/runup/internal/backend"
)

// Config is a parsed s3:// location.
type Config struct {
	Endpoint  string // host[:port]
	Bucket    string
	Prefix    string
	HTTP      bool   // plain HTTP (a local test server)
	PathStyle bool   // bucket in the path rather than the host name
	Region    string // optional
	// Timeout bounds how long a request may make no progress (0:
	// backend.DefaultTimeout).
	Timeout time.Duration
}

// ParseURL reads s3://host[:port]/bucket[/prefix][?http=1&path-style=1&region=R].
func ParseURL(s string) (Config, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return Config{}, fmt.Errorf("repository %q: want s3://host[:port]/bucket[/prefix]", s)
	}
	parts := strings.SplitN(strings.Trim(u.Path, "/"), "/", 2)
	if parts[0] == "" {
		return Config{}, fmt.Errorf("repository %q: no bucket: want s3://host[:port]/bucket[/prefix]", s)
	}
	c := Config{Endpoint: u.Host, Bucket: parts[0]}
	if len(parts) == 2 {
		c.Prefix = strings.Trim(parts[1], "/")
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "http", "path-style", "region":
		default:
			return Config{}, fmt.Errorf("repository %q: unknown option %q (http, path-style, region)", s, k)
		}
	}
	c.HTTP = q.Get("http") == "1" || q.Get("http") == "true"
	c.PathStyle = q.Get("path-style") == "1" || q.Get("path-style") == "true"
	c.Region = q.Get("region")
	if c.Region == "" {
		c.Region = os.Getenv("AWS_REGION")
	}
	if c.Region == "" {
		c.Region = os.Getenv("AWS_DEFAULT_REGION")
	}
	return c, nil
}

// Backend is a repository in a bucket.
type Backend struct {
	c      *minio.Client
	cfg    Config
	ifNone bool // the store honours If-None-Match: * on PUT
}

var _ backend.Backend = (*Backend)(nil)

// credentialsChain takes credentials the way AWS tools do: the environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), then the
// shared credentials file for AWS_PROFILE, then an instance role.
func credentialsChain() *credentials.Credentials {
	file := os.Getenv("AWS_SHARED_CREDENTIALS_FILE")
	if file == "" {
		if home, err := os.UserHomeDir(); err == nil {
			file = filepath.Join(home, ".aws", "credentials")
		}
	}
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{Filename: file, Profile: os.Getenv("AWS_PROFILE")},
		&credentials.IAM{},
	})
}

// Open connects to the store; it does not create the bucket.
func Open(cfg Config) (*Backend, error) {
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = backend.DefaultTimeout
	}
	// Every wait has a deadline: connecting, the TLS handshake, the first
	// byte of an answer; the bodies are watched by a Watchdog. Retries are
	// backend/retry's, so the client makes none of its own.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: min(cfg.Timeout, 30*time.Second), KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = min(cfg.Timeout, 30*time.Second)
	tr.ResponseHeaderTimeout = cfg.Timeout
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentialsChain(),
		Secure:       !cfg.HTTP,
		Region:       cfg.Region,
		BucketLookup: lookup,
		Transport:    tr,
		MaxRetries:   1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", cfg.Endpoint, err)
	}
	return &Backend{c: c, cfg: cfg, ifNone: true}, nil
}

// Create makes the bucket if it does not exist.
func (b *Backend) Create(ctx context.Context) error {
	ok, err := b.c.BucketExists(ctx, b.cfg.Bucket)
	if err != nil {
		return b.wrap("bucket "+b.cfg.Bucket, err)
	}
	if ok {
		return nil
	}
	if err := b.c.MakeBucket(ctx, b.cfg.Bucket, minio.MakeBucketOptions{Region: b.cfg.Region}); err != nil {
		return b.wrap("create bucket "+b.cfg.Bucket, err)
	}
	return nil
}

// Location implements backend.Backend; it names no credentials.
func (b *Backend) Location() string {
	return fmt.Sprintf("s3://%s/%s", b.cfg.Endpoint, path.Join(b.cfg.Bucket, b.cfg.Prefix))
}

func (b *Backend) key(h backend.Handle) string {
	return path.Join(b.cfg.Prefix, backend.Path(h))
}

func (b *Backend) wrap(what string, err error) error {
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() && !errors.Is(err, backend.ErrStalled) {
		// The transport's own deadlines (connecting, the answer's headers).
		return fmt.Errorf("%s: %w for %v: the server stopped answering: %w", what, backend.ErrStalled, b.cfg.Timeout, err)
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		switch resp.Code {
		case "NoSuchKey", "NoSuchBucket":
			return fmt.Errorf("%s: %w", what, backend.ErrNotExist)
		case "InvalidRange":
			return fmt.Errorf("%s: %w", what, backend.ErrRange)
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch":
			return fmt.Errorf("%s: %w: %s (check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)", what, backend.ErrPermanent, resp.Message)
		}
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%s: %w", what, backend.ErrNotExist)
		}
		if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
			return fmt.Errorf("%s: %w: %w", what, backend.ErrPermanent, err)
		}
		if resp.StatusCode == 0 && resp.Code != "" {
			// Refused by the client library before sending: invalid names.
			return fmt.Errorf("%s: %w: %w", what, backend.ErrPermanent, err)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Save implements backend.Backend.
func (b *Backend) Save(ctx context.Context, h backend.Handle, data []byte) error {
	return b.SaveReader(ctx, h, bytes.NewReader(data), int64(len(data)))
}

// SaveReader implements backend.ReaderSaver.
func (b *Backend) SaveReader(ctx context.Context, h backend.Handle, r io.ReaderAt, size int64) error {
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: size < 64<<20}
	if b.ifNone {
		opts.SetMatchETagExcept("*")
	} else if _, err := b.Stat(ctx, h); err == nil {
		return fmt.Errorf("save %v: %w", h, backend.ErrExists)
	}
	wctx, wd := backend.NewWatchdog(ctx, b.cfg.Timeout)
	_, err := b.c.PutObject(wctx, b.cfg.Bucket, b.key(h), wd.Reader(io.NewSectionReader(r, 0, size)), size, opts)
	err = wd.Err(err)
	wd.Stop()
	if err != nil {
		var resp minio.ErrorResponse
		if errors.As(err, &resp) && (resp.StatusCode == http.StatusPreconditionFailed || resp.Code == "PreconditionFailed") {
			return fmt.Errorf("save %v: %w", h, backend.ErrExists)
		}
		if errors.As(err, &resp) && resp.Code == "AccessDenied" {
			// Reading worked (the repository was opened): the credentials
			// or the bucket's policy allow no writes.
			return fmt.Errorf("save %v: %w: %w: %s", h, backend.ErrReadOnly, backend.ErrPermanent, resp.Message)
		}
		return b.wrap(fmt.Sprintf("save %v", h), err)
	}
	return nil
}

// Replace implements backend.Replacer: a PUT without a condition replaces
// an object atomically.
func (b *Backend) Replace(ctx context.Context, h backend.Handle, data []byte) error {
	ctx, wd := backend.NewWatchdog(ctx, b.cfg.Timeout)
	defer wd.Stop()
	_, err := b.c.PutObject(ctx, b.cfg.Bucket, b.key(h), bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: true})
	if err != nil {
		return b.wrap(fmt.Sprintf("replace %v", h), err)
	}
	return nil
}

// Load implements backend.Backend.
func (b *Backend) Load(ctx context.Context, h backend.Handle, offset, length int64) ([]byte, error) {
	opts := minio.GetObjectOptions{}
	if offset > 0 || length > 0 {
		end := int64(0)
		if length > 0 {
			end = offset + length - 1
		}
		if err := opts.SetRange(offset, end); err != nil {
			return nil, err
		}
	}
	wctx, wd := backend.NewWatchdog(ctx, b.cfg.Timeout)
	defer wd.Stop()
	obj, err := b.c.GetObject(wctx, b.cfg.Bucket, b.key(h), opts)
	if err != nil {
		return nil, b.wrap(fmt.Sprintf("load %v", h), wd.Err(err))
	}
	defer obj.Close()
	var buf bytes.Buffer
	if length > 0 {
		buf.Grow(int(length))
	}
	if _, err := buf.ReadFrom(wd.Reader(obj)); err != nil {
		return nil, b.wrap(fmt.Sprintf("load %v", h), wd.Err(err))
	}
	if length > 0 && int64(buf.Len()) != length {
		return nil, fmt.Errorf("load %v: %w: got %d bytes at %d, want %d", h, backend.ErrRange, buf.Len(), offset, length)
	}
	return buf.Bytes(), nil
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	wctx, wd := backend.NewWatchdog(ctx, b.cfg.Timeout)
	defer wd.Stop()
	info, err := b.c.StatObject(wctx, b.cfg.Bucket, b.key(h), minio.StatObjectOptions{})
	if err != nil {
		return backend.FileInfo{}, b.wrap(fmt.Sprintf("stat %v", h), wd.Err(err))
	}
	return backend.FileInfo{Name: h.Name, Size: info.Size, ModTime: info.LastModified}, nil
}

// List implements backend.Backend.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	prefix := path.Join(b.cfg.Prefix, string(t)) + "/"
	ctx, wd := backend.NewWatchdog(ctx, b.cfg.Timeout)
	defer wd.Stop()
	for obj := range b.c.ListObjects(ctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		wd.Touch()
		if obj.Err != nil {
			return b.wrap(fmt.Sprintf("list %s", t), wd.Err(obj.Err))
		}
		name := strings.TrimPrefix(obj.Key, prefix)
		if t == backend.Data {
			// data/<xx>/<name>: the folder must be the name's first digits.
			dir, base, ok := strings.Cut(name, "/")
			if !ok || len(base) < 2 || base[:2] != dir {
				continue
			}
			name = base
		}
		if name == "" || strings.Contains(name, "/") || strings.HasPrefix(name, ".") {
			continue
		}
		if err := fn(backend.FileInfo{Name: name, Size: obj.Size, ModTime: obj.LastModified}); err != nil {
			return err
		}
	}
	return nil
}

// Remove implements backend.Backend.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	wctx, wd := backend.NewWatchdog(ctx, b.cfg.Timeout)
	defer wd.Stop()
	err := wd.Err(b.c.RemoveObject(wctx, b.cfg.Bucket, b.key(h), minio.RemoveObjectOptions{}))
	if err != nil && !errors.Is(b.wrap("", err), backend.ErrNotExist) {
		return b.wrap(fmt.Sprintf("remove %v", h), err)
	}
	return nil
}

// Close implements backend.Backend.
func (b *Backend) Close() error { return nil }
