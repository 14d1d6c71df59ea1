package s3

import (
	"context"
	"testing"

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
