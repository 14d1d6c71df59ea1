// Package config reads runup.yaml.
//
// Version '1' is read exactly as the original RunUp read it, with its
// messages; version '2' adds the repository location, compression, a
// password source, glob excludes and retention policies. Every error names
// the file and line, and unknown keys are refused by name.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"gopkg.in/yaml.v3"
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
}

// Project is one project of a config.
type Project struct {
	Name    string
	Include []string // as written
	Exclude []string // as written
	Keep    *Keep    // version 2; nil when not given
	Line    int
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
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
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
		allowed = append(allowed, "repository", "compression", "password")
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
		allowed = append(allowed, "keep")
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
		default:
			return nil, p.errf(k, "unknown key %q in project %q (allowed here: %s)", k.Value, name.Value, strings.Join(allowed, ", "))
		}
	}
	if len(proj.Include) == 0 {
		return nil, p.errf(name, "project %q needs a non-empty \"include\" list", name.Value)
	}
	return proj, nil
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
