package s3

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/backend/backendtest"
	"github.com/runup/runup/internal/testservers"
)

func TestConformance(t *testing.T) {
	srv := testservers.StartS3(t)
	for _, kv := range srv.Env() {
		k, v, _ := cut(kv)
		t.Setenv(k, v)
	}
	cfg, err := ParseURL(srv.URL("conformance", "some/prefix"))
	if err != nil {
		t.Fatal(err)
	}
	be, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Create(context.Background()); err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, be)
}

func cut(kv string) (string, string, bool) {
	for i := range kv {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

func TestParseURL(t *testing.T) {
	c, err := ParseURL("s3://host:9000/bucket/a/b?http=1&path-style=1&region=eu-west-1")
	if err != nil || c.Endpoint != "host:9000" || c.Bucket != "bucket" || c.Prefix != "a/b" || !c.HTTP || !c.PathStyle || c.Region != "eu-west-1" {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []string{"s3://host", "s3:///bucket", "http://host/b", "s3://host/b?tls=0"} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A server that stops answering (frozen, not refusing) costs one timeout,
// not forever.
func TestFrozenServer(t *testing.T) {
	srv := testservers.StartS3(t)
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	cfg, err := ParseURL(srv.URL("frozen", ""))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = time.Second
	be, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := be.Create(ctx); err != nil {
		t.Fatal(err)
	}
	h := backend.Handle{Type: backend.Keys, Name: "k"}
	if err := be.Save(ctx, h, []byte("x")); err != nil {
		t.Fatal(err)
	}
	srv.Freeze()
	for name, op := range map[string]func() error{
		"load": func() error { _, err := be.Load(ctx, h, 0, 0); return err },
		"save": func() error { return be.Save(ctx, backend.Handle{Type: backend.Keys, Name: "k2"}, []byte("y")) },
		"list": func() error { return be.List(ctx, backend.Keys, func(backend.FileInfo) error { return nil }) },
		"stat": func() error { _, err := be.Stat(ctx, h); return err },
	} {
		start := time.Now()
		if err := op(); !errors.Is(err, backend.ErrStalled) || time.Since(start) > 10*time.Second {
			t.Errorf("%s on a frozen server: %v after %v", name, err, time.Since(start))
		}
	}
	srv.Thaw()
	if b, err := be.Load(ctx, h, 0, 0); err != nil || string(b) != "x" {
		t.Fatalf("after the server came back: %q %v", b, err)
	}
}
