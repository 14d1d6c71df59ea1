package main

import (
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// synthetic runs one of the synthetic cases for every tool and writes a
// section of its own.
func synthetic(kind, work, bin, out, only string, runs int, size int64, files int) {
	src := filepath.Join(work, "src")
	must(os.MkdirAll(src, 0o755))
	res := newResults()
	var note string
	switch kind {
	case "bigfile":
		writeRandomFile(filepath.Join(src, "big"), size, 1)
		note = fmt.Sprintf("One file of %.1f GiB of random data.", float64(size)/(1<<30))
	case "smallfiles":
		makeSmallFiles(src, files)
		note = fmt.Sprintf("%d small files (20–2000 bytes) in folders of 1,000.", files)
	case "fewbytes":
		writeRandomFile(filepath.Join(src, "big"), size, 2)
		note = fmt.Sprintf("One file of %.1f GiB; then 10 bytes changed at spread offsets and backed up again. \"added\" is the repository's growth.", float64(size)/(1<<30))
	default:
		log.Fatalf("unknown case %q (versions, bigfile, smallfiles, fewbytes)", kind)
	}
	res.bytes = dirSize(src)
	for _, t := range tools(bin, work) {
		if !strings.Contains(only, t.name) {
			continue
		}
		for r := range runs {
			log.Printf("%s %s run %d", kind, t.name, r+1)
			repo := filepath.Join(work, "repo-"+t.name)
			must(os.RemoveAll(repo))
			for _, d := range []string{"cache-" + t.name, "borg-base"} {
				must(os.RemoveAll(filepath.Join(work, d)))
			}
			for _, c := range t.init(repo) {
				_, err := run(work, t.env, c...)
				must(err)
			}
			s, err := run(work, t.env, t.backup(repo, src, 1)...)
			must(err)
			res.add(t.name, "first backup", s)
			n := 1
			switch kind {
			case "smallfiles":
				n++
				s, err = run(work, t.env, t.backup(repo, src, n)...)
				must(err)
				res.add(t.name, "no-change backup", s)
			case "fewbytes":
				before := dirSize(repo)
				flipBytes(filepath.Join(src, "big"), 10)
				n++
				s, err = run(work, t.env, t.backup(repo, src, n)...)
				must(err)
				res.add(t.name, "backup after 10 changed bytes", s)
				res.size[t.name+" added"] = append(res.size[t.name+" added"], dirSize(repo)-before)
			}
			dst := filepath.Join(work, "restore-"+t.name)
			must(os.RemoveAll(dst))
			must(os.MkdirAll(dst, 0o755))
			s, err = run(dst, t.env, t.restore(repo, dst, n)...)
			must(err)
			res.add(t.name, "restore", s)
			if _, err := run("/", nil, "diff", "-r", "--no-dereference", "-q", src, filepath.Join(dst, src)); err != nil {
				log.Fatalf("%s restored something else than the source: %v", t.name, err)
			}
			must(os.RemoveAll(dst))
			res.size[t.name] = append(res.size[t.name], dirSize(repo))
			if kind == "fewbytes" {
				flipBytes(filepath.Join(src, "big"), 10) // back to a fresh change next run
			}
		}
	}
	res.runs = runs
	must(res.writeSynthetic(out, kind, note))
}

func writeRandomFile(path string, size int64, seed uint64) {
	f, err := os.Create(path)
	must(err)
	defer f.Close()
	r := rand.NewChaCha8([32]byte{byte(seed)})
	buf := make([]byte, 4<<20)
	for written := int64(0); written < size; {
		n := min(int64(len(buf)), size-written)
		_, _ = r.Read(buf[:n])
		_, err := f.Write(buf[:n])
		must(err)
		written += n
	}
}

func makeSmallFiles(root string, n int) {
	r := rand.New(rand.NewPCG(3, 3))
	buf := make([]byte, 2000)
	for i := range n {
		dir := filepath.Join(root, fmt.Sprintf("d%04d", i/1000))
		if i%1000 == 0 {
			must(os.MkdirAll(dir, 0o755))
		}
		size := 20 + r.IntN(1980)
		for j := range size {
			buf[j] = 'a' + byte(r.IntN(26))
		}
		must(os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d.txt", i%1000)), buf[:size], 0o644))
	}
}

// flipBytes inverts n bytes spread over the file.
func flipBytes(path string, n int) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	must(err)
	defer f.Close()
	fi, err := f.Stat()
	must(err)
	b := make([]byte, 1)
	for i := range n {
		off := fi.Size() / int64(n+1) * int64(i+1)
		_, err := f.ReadAt(b, off)
		must(err)
		b[0] ^= 0xff
		_, err = f.WriteAt(b, off)
		must(err)
	}
	must(os.Chtimes(path, time.Now(), time.Now()))
}

func (r *results) writeSynthetic(path, label, note string) error {
	var b strings.Builder
	tools := r.tools()
	fmt.Fprintf(&b, "Measured %s; %d runs per tool, medians. %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), r.runs, note)
	tableHeader(&b, tools, "runup ÷ faster peer")
	for _, c := range r.cases {
		fmt.Fprintf(&b, "| %s |", c)
		med := map[string]sample{}
		for _, t := range tools {
			med[t] = median(r.samples[t][c])
			fmt.Fprintf(&b, " %s |", secs(med[t].dur))
		}
		fmt.Fprintf(&b, " %s |\n", ratio(med["runup"].dur, fasterPeer(med)))
	}
	for _, c := range r.cases {
		fmt.Fprintf(&b, "| peak memory, %s |", c)
		var peer int64
		for _, t := range tools {
			m := maxRSS(r.samples[t][c])
			if t != "runup" && (peer == 0 || m < peer) {
				peer = m
			}
			fmt.Fprintf(&b, " %d MiB |", m>>10)
		}
		fmt.Fprintf(&b, " %s |\n", fratio(float64(maxRSS(r.samples["runup"][c])), float64(peer)))
	}
	for _, what := range []string{"", " added"} {
		if r.size["runup"+what] == nil {
			continue
		}
		name := "repository size"
		if what != "" {
			name = "repository growth after 10 changed bytes"
		}
		fmt.Fprintf(&b, "| %s |", name)
		var peer float64
		for _, t := range tools {
			v := float64(medianInt(orZero(r.size[t+what])))
			if t != "runup" && (peer == 0 || v < peer) {
				peer = v
			}
			fmt.Fprintf(&b, " %.2f MiB |", v/(1<<20))
		}
		fmt.Fprintf(&b, " %s |\n", fratio(float64(medianInt(orZero(r.size["runup"+what]))), peer))
	}
	return replaceSection(path, label, b.String())
}
