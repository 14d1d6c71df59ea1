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

// ReadPassword resolves a password source of the config file at cfgFile
// (env:NAME, file:PATH relative to the file's directory, command:CMD run
// by sh). A trailing newline is dropped.
func ReadPassword(spec, cfgFile string) ([]byte, error) {
	if err := checkPasswordSpec(spec); err != nil {
		return nil, err
	}
	dir := filepath.Dir(cfgFile)
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
		if err := SafeToRun(cfgFile, "password command"); err != nil {
			return nil, err
		}
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

// SafeToRun refuses a config file that someone other than its owner could
// have written, or that belongs to another user than the one running (or
// root): its commands (what names them: a password command, hooks) would
// run whatever they put there. ssh refuses a loose config the same way.
func SafeToRun(cfgFile, what string) error {
	fi, err := os.Stat(cfgFile)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s refused: %s is writable by others than its owner (mode %v), so anyone could choose the command; run 'chmod go-w %s'", what, cfgFile, fi.Mode().Perm(), cfgFile)
	}
	if owner, ok := fileOwner(fi); ok && owner != 0 && owner != os.Geteuid() {
		return fmt.Errorf("%s refused: %s belongs to user %d, not to you or root", what, cfgFile, owner)
	}
	return nil
}
