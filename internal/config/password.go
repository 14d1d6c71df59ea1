package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

func checkPasswordSpec(spec string) error {
	kind, arg, ok := strings.Cut(spec, ":")
	if !ok || arg == "" || (kind != "env" && kind != "file" && kind != "command") {
		return errors.New("say where the password comes from: env:NAME, file:PATH or command:CMD — never the password itself")
	}
	return nil
}

// ReadPassword resolves a password source (env:NAME, file:PATH relative to
// dir, command:CMD run by sh). A trailing newline is dropped.
func ReadPassword(spec, dir string) ([]byte, error) {
	if err := checkPasswordSpec(spec); err != nil {
		return nil, err
	}
	kind, arg, _ := strings.Cut(spec, ":")
	var out []byte
	switch kind {
	case "env":
		v, ok := os.LookupEnv(arg)
		if !ok {
			return nil, fmt.Errorf("password: environment variable %s is not set", arg)
		}
		out = []byte(v)
	case "file":
		if !filepath.IsAbs(arg) {
			arg = filepath.Join(dir, arg)
		}
		b, err := os.ReadFile(arg)
		if err != nil {
			return nil, fmt.Errorf("password file: %w", err)
		}
		out = b
	case "command":
		cmd := exec.Command("sh", "-c", arg)
		cmd.Dir = dir
		cmd.Stderr = os.Stderr
		b, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("password command %q: %w", arg, err)
		}
		out = b
	}
	out = bytes.TrimRight(out, "\r\n")
	if len(out) == 0 {
		return nil, fmt.Errorf("password from %s is empty", spec)
	}
	return out, nil
}
