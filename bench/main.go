// Command bench measures RunUp against restic and borg on the same data, in
// one run, and writes the results into docs/benchmarks.md and a chart.
//
//	go run ./bench -versions /dev/shm/kern/linux-source-6.1,/dev/shm/kern/linux-source-6.12 -work /dev/shm/runup-bench -label kernel
//	go run ./bench -case bigfile -size 10737418240 -work /work/bench-big -runs 1
//	go run ./bench -case smallfiles -files 1000000 -work /dev/shm/runup-small -runs 1
//	go run ./bench -case fewbytes -size 1073741824 -work /dev/shm/runup-few
//	go run ./bench -case manychunks -chunks 100000000 -work /work/bench-many
//
// Each tool gets a fresh encrypted repository per run, with its default
// compression. Per run: first backup of version 1, a backup with nothing
// changed, an incremental backup for each later version, a restore of the
// latest job into an empty directory (verified identical to the source),
// the repository size and each command's peak memory. Medians over -runs.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

type sample struct {
	dur time.Duration
	rss int64 // KiB
}

type tool struct {
	name    string
	env     []string
	init    func(repo string) [][]string
	backup  func(repo, src string, n int) []string
	restore func(repo, dst string, n int) []string
}

func tools(bin, work string) []tool {
	return []tool{
		{
			name: "runup",
			env:  []string{"RUNUP_PASSWORD=bench-password", "XDG_CACHE_HOME=" + filepath.Join(work, "cache-runup")},
			init: func(repo string) [][]string { return [][]string{{bin, "--repo", repo, "init"}} },
			backup: func(repo, src string, n int) []string {
				return []string{bin, "--repo", repo, "-q", "backup", "--project", "bench", src}
			},
			restore: func(repo, dst string, n int) []string {
				return []string{bin, "--repo", repo, "-q", "restore", "bench", "-l", dst, "-f"}
			},
		},
		{
			name: "restic",
			env:  []string{"RESTIC_PASSWORD=bench-password", "XDG_CACHE_HOME=" + filepath.Join(work, "cache-restic")},
			init: func(repo string) [][]string { return [][]string{{"restic", "-r", repo, "init", "-q"}} },
			backup: func(repo, src string, n int) []string {
				return []string{"restic", "-r", repo, "backup", "-q", "--host", "bench", src}
			},
			restore: func(repo, dst string, n int) []string {
				return []string{"restic", "-r", repo, "restore", "latest", "-q", "--target", dst}
			},
		},
		{
			name: "borg",
			env: []string{"BORG_PASSPHRASE=bench-password", "BORG_BASE_DIR=" + filepath.Join(work, "borg-base"),
				"BORG_RELOCATED_REPO_ACCESS_IS_OK=yes"},
			init: func(repo string) [][]string { return [][]string{{"borg", "init", "-e", "repokey", repo}} },
			backup: func(repo, src string, n int) []string {
				return []string{"borg", "create", fmt.Sprintf("%s::b%d", repo, n), src}
			},
			restore: func(repo, dst string, n int) []string {
				return []string{"borg", "extract", fmt.Sprintf("%s::b%d", repo, n)}
			},
		},
	}
}

var verbose = flag.Bool("v", false, "log every command")

// run executes a command and returns its wall time and peak RSS. The RSS
// comes from /usr/bin/time: a Go parent starts children with vfork, so the
// child's own rusage would include this process's memory at that moment.
func run(dir string, env []string, args ...string) (sample, error) {
	rssFile, err := os.CreateTemp("", "bench-rss-")
	if err != nil {
		return sample{}, err
	}
	rssFile.Close()
	defer os.Remove(rssFile.Name())
	args = append([]string{"/usr/bin/time", "-o", rssFile.Name(), "-f", "%M"}, args...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if *verbose {
		log.Printf("$ %s", strings.Join(args, " "))
	}
	start := time.Now()
	err = cmd.Run()
	d := time.Since(start)
	if err != nil {
		return sample{}, fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	var rss int64
	b, _ := os.ReadFile(rssFile.Name())
	fmt.Sscan(strings.TrimSpace(string(b)), &rss)
	return sample{dur: d, rss: rss}, nil
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func syncTree(from, to string) {
	_, err := run("/", nil, "rsync", "-a", "--delete", from+"/", to+"/")
	must(err)
}

func dirSize(root string) int64 {
	var n int64
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func main() {
	versions := flag.String("versions", "", "comma-separated source trees, synced one after another into the backup source")
	work := flag.String("work", "/dev/shm/runup-bench", "scratch directory (source copy, repositories, restores)")
	runs := flag.Int("runs", 3, "runs per tool; medians are reported")
	only := flag.String("tools", "runup,restic,borg", "tools to measure")
	label := flag.String("label", "", "name of this measurement in docs/benchmarks.md")
	out := flag.String("out", "docs/benchmarks.md", "markdown file to update (between the markers of -label)")
	kind := flag.String("case", "versions", "versions (the real data set), or a synthetic case: bigfile, smallfiles, fewbytes, manychunks")
	size := flag.Int64("size", 10<<30, "bigfile and fewbytes: the file's size")
	files := flag.Int("files", 1_000_000, "smallfiles: how many")
	chunks := flag.Int("chunks", 100_000_000, "manychunks: how many chunks the repository holds")
	flag.Parse()
	must(os.RemoveAll(*work))
	must(os.MkdirAll(*work, 0o755))
	bin := filepath.Join(*work, "runup")
	_, err := run(".", nil, "go", "build", "-o", bin, "./cmd/runup")
	must(err)
	if *kind == "manychunks" {
		manyChunks(*work, bin, *out, *chunks)
		return
	}
	if *kind != "versions" {
		if *label == "" {
			*label = *kind
		}
		synthetic(*kind, *work, bin, *out, *only, *runs, *size, *files)
		return
	}
	if *versions == "" || *label == "" {
		log.Fatal("need -versions and -label")
	}
	vers := strings.Split(*versions, ",")

	src := filepath.Join(*work, "src")
	must(os.MkdirAll(src, 0o755))
	res := newResults()

	// Physical limits on the same tree and disk.
	syncTree(vers[0], src)
	res.bytes = dirSize(src)
	for range *runs {
		s, err := run("/", nil, "sh", "-c", "tar cf - "+src+" | cat >/dev/null")
		must(err)
		res.add("limits", "read (tar)", s)
		dst := filepath.Join(*work, "cp")
		s, err = run("/", nil, "cp", "-a", src, dst)
		must(err)
		res.add("limits", "copy (cp -a)", s)
		must(os.RemoveAll(dst))
	}

	for _, t := range tools(bin, *work) {
		if !strings.Contains(*only, t.name) {
			continue
		}
		for r := range *runs {
			log.Printf("%s run %d", t.name, r+1)
			repo := filepath.Join(*work, "repo-"+t.name)
			must(os.RemoveAll(repo))
			for _, d := range []string{"cache-" + t.name, "borg-base"} {
				must(os.RemoveAll(filepath.Join(*work, d)))
			}
			for _, c := range t.init(repo) {
				_, err := run(*work, t.env, c...)
				must(err)
			}
			syncTree(vers[0], src)
			n := 1
			s, err := run(*work, t.env, t.backup(repo, src, n)...)
			must(err)
			res.add(t.name, "first backup", s)
			n++
			s, err = run(*work, t.env, t.backup(repo, src, n)...)
			must(err)
			res.add(t.name, "no-change backup", s)
			for i, v := range vers[1:] {
				syncTree(v, src)
				n++
				s, err = run(*work, t.env, t.backup(repo, src, n)...)
				must(err)
				res.add(t.name, fmt.Sprintf("incremental backup %d", i+1), s)
			}
			dst := filepath.Join(*work, "restore-"+t.name)
			must(os.RemoveAll(dst))
			must(os.MkdirAll(dst, 0o755))
			s, err = run(dst, t.env, t.restore(repo, dst, n)...)
			must(err)
			res.add(t.name, "restore latest", s)
			if _, err := run("/", nil, "diff", "-r", "--no-dereference", src, filepath.Join(dst, src)); err != nil {
				log.Fatalf("%s restored something else than the source: %v", t.name, err)
			}
			must(os.RemoveAll(dst))
			res.size[t.name] = append(res.size[t.name], dirSize(repo))
		}
	}
	// Last: it reads the whole tree into this process, and children forked
	// after that would inherit its peak RSS in their rusage.
	syncTree(vers[0], src)
	res.add("limits", "CPU bound (chunk+hash+zstd, all cores)", sample{dur: cpuBound(src)})
	res.versions = vers
	res.runs = *runs
	must(res.write(*out, *label))
}

func median(xs []sample) sample {
	s := slices.Clone(xs)
	slices.SortFunc(s, func(a, b sample) int { return int(a.dur - b.dur) })
	return s[len(s)/2]
}

func medianInt(xs []int64) int64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
