package main

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"

	"github.com/runup/runup/internal/chunker"
)

type results struct {
	cases    []string // in order of first appearance
	samples  map[string]map[string][]sample
	size     map[string][]int64
	bytes    int64
	versions []string
	runs     int
}

func newResults() *results {
	return &results{samples: map[string]map[string][]sample{}, size: map[string][]int64{}}
}

func (r *results) add(tool, c string, s sample) {
	if r.samples[tool] == nil {
		r.samples[tool] = map[string][]sample{}
	}
	if !strings.HasPrefix(tool, "limits") && !contains(r.cases, c) {
		r.cases = append(r.cases, c)
	}
	r.samples[tool][c] = append(r.samples[tool][c], s)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// cpuBound is the time chunking, hashing and compressing the tree takes on
// all cores with the data already in memory: what no backup can beat
// without doing less work. It compresses as RunUp stores: zstd's fastest
// level, chunks under 128 KiB in groups of 512 KiB.
func cpuBound(src string) time.Duration {
	var files [][]byte
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, err := os.ReadFile(p); err == nil {
				files = append(files, b)
			}
		}
		return nil
	})
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true))
	key := make([]byte, 32)
	work := make(chan []byte)
	var wg sync.WaitGroup
	start := time.Now()
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, _ := chunker.New(key, make([]byte, 2*chunker.MaxSize))
			h, _ := blake3.NewKeyed(key)
			var dst, group []byte
			for f := range work {
				ch.Reset(bytes.NewReader(f))
				for {
					c, err := ch.Next()
					if err == io.EOF {
						break
					}
					h.Reset()
					h.Write(c)
					h.Sum(nil)
					if len(c) >= 128<<10 {
						dst = enc.EncodeAll(c, dst[:0])
						continue
					}
					if group = append(group, c...); len(group) >= 512<<10 {
						dst = enc.EncodeAll(group, dst[:0])
						group = group[:0]
					}
				}
			}
			enc.EncodeAll(group, dst[:0])
		}()
	}
	for _, f := range files {
		work <- f
	}
	close(work)
	wg.Wait()
	return time.Since(start)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func ratio(a, b time.Duration) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", a.Seconds()/b.Seconds())
}

// tools lists the tools measured, in table order.
func (r *results) tools() []string {
	var tools []string
	for _, t := range []string{"runup", "restic", "borg"} {
		if r.samples[t] != nil {
			tools = append(tools, t)
		}
	}
	return tools
}

// tableHeader writes a results table's two header lines: the measure, a
// column per tool, then the ratio columns.
func tableHeader(b *strings.Builder, tools []string, ratios ...string) {
	b.WriteString("| measure |")
	for _, t := range tools {
		fmt.Fprintf(b, " %s |", t)
	}
	for _, r := range ratios {
		fmt.Fprintf(b, " %s |", r)
	}
	b.WriteString("\n|---|")
	for range len(tools) + len(ratios) {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
}

func (r *results) write(path, label string) error {
	var b strings.Builder
	tools := r.tools()
	fmt.Fprintf(&b, "Measured %s on %d cores; %d runs per tool, medians. Source: %s (%.0f MiB), then %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), r.runs, filepath.Base(r.versions[0]),
		float64(r.bytes)/(1<<20), strings.Join(baseNames(r.versions[1:]), ", "))
	tableHeader(&b, tools, "runup ÷ restic", "runup ÷ borg", "runup ÷ faster peer")
	for _, c := range r.cases {
		fmt.Fprintf(&b, "| %s |", c)
		med := map[string]sample{}
		for _, t := range tools {
			if s := r.samples[t][c]; len(s) > 0 {
				med[t] = median(s)
				fmt.Fprintf(&b, " %s |", secs(med[t].dur))
			} else {
				b.WriteString(" - |")
			}
		}
		peer := fasterPeer(med)
		fmt.Fprintf(&b, " %s | %s | %s |\n", ratio(med["runup"].dur, med["restic"].dur), ratio(med["runup"].dur, med["borg"].dur), ratio(med["runup"].dur, peer))
	}
	b.WriteString("| repository size |")
	for _, t := range tools {
		fmt.Fprintf(&b, " %.1f MiB |", float64(medianInt(r.size[t]))/(1<<20))
	}
	rs, ru, rb := float64(medianInt(orZero(r.size["restic"]))), float64(medianInt(orZero(r.size["runup"]))), float64(medianInt(orZero(r.size["borg"])))
	fmt.Fprintf(&b, " %s | %s | |\n", fratio(ru, rs), fratio(ru, rb))
	for _, c := range []string{"first backup", "restore latest"} {
		fmt.Fprintf(&b, "| peak memory, %s |", c)
		for _, t := range tools {
			if s := r.samples[t][c]; len(s) > 0 {
				fmt.Fprintf(&b, " %d MiB |", maxRSS(s)>>10)
			} else {
				b.WriteString(" - |")
			}
		}
		b.WriteString(" | | |\n")
	}
	b.WriteString("\nPhysical limits on the same tree and disk, and RunUp's ratio to them:\n\n| limit | time | runup first backup ÷ limit | runup restore ÷ limit |\n|---|---:|---:|---:|\n")
	fb, rl := median(r.samples["runup"]["first backup"]).dur, median(r.samples["runup"]["restore latest"]).dur
	for _, c := range []string{"read (tar)", "copy (cp -a)", "CPU bound (chunk+hash+zstd, all cores)"} {
		m := median(r.samples["limits"][c]).dur
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", c, secs(m), ratio(fb, m), ratio(rl, m))
	}
	svgName := "benchmarks-" + label + ".svg"
	fmt.Fprintf(&b, "\n![%s](%s)\n", label, svgName)
	if err := os.WriteFile(filepath.Join(filepath.Dir(path), svgName), []byte(r.svg(tools)), 0o644); err != nil {
		return err
	}
	return replaceSection(path, label, b.String())
}

func orZero(x []int64) []int64 {
	if len(x) == 0 {
		return []int64{0}
	}
	return x
}

func fratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func maxRSS(s []sample) int64 {
	var m int64
	for _, x := range s {
		m = max(m, x.rss)
	}
	return m
}

func fasterPeer(med map[string]sample) time.Duration {
	var best time.Duration
	for _, t := range []string{"restic", "borg"} {
		if s, ok := med[t]; ok && (best == 0 || s.dur < best) {
			best = s.dur
		}
	}
	return best
}

func baseNames(ps []string) []string {
	var out []string
	for _, p := range ps {
		out = append(out, filepath.Base(p))
	}
	if len(out) == 0 {
		return []string{"no later version"}
	}
	return out
}

// replaceSection puts text between the label's markers, appending the
// section if the file has none.
func replaceSection(path, label, text string) error {
	start, end := "<!-- bench:"+label+":start -->", "<!-- bench:"+label+":end -->"
	old, _ := os.ReadFile(path)
	s := string(old)
	block := start + "\n" + text + end
	i, j := strings.Index(s, start), strings.Index(s, end)
	if i >= 0 && j > i {
		s = s[:i] + block + s[j+len(end):]
	} else {
		s += "\n### " + label + "\n\n" + block + "\n"
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

// svg draws grouped bars of median seconds per case and tool.
func (r *results) svg(tools []string) string {
	colors := map[string]string{"runup": "#2b8a3e", "restic": "#1971c2", "borg": "#e8590c"}
	var maxd float64
	for _, t := range tools {
		for _, c := range r.cases {
			if s := r.samples[t][c]; len(s) > 0 {
				maxd = max(maxd, median(s).dur.Seconds())
			}
		}
	}
	const w, rowH, barH, left = 760, 22, 6, 190
	h := 40 + len(r.cases)*rowH*len(tools)/2 + len(r.cases)*10 + 30
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="20" font-size="14">Median seconds (shorter is better)</text>`+"\n")
	y := 40
	for _, c := range r.cases {
		fmt.Fprintf(&b, `<text x="10" y="%d">%s</text>`+"\n", y+barH*len(tools)/2+4, c)
		for _, t := range tools {
			s := r.samples[t][c]
			if len(s) == 0 {
				continue
			}
			d := median(s).dur.Seconds()
			bw := int(float64(w-left-90) * d / maxd)
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/><text x="%d" y="%d" font-size="10">%s %.2fs</text>`+"\n",
				left, y, max(bw, 1), barH+2, colors[t], left+bw+4, y+barH+1, t, d)
			y += barH + 4
		}
		y += 12
	}
	b.WriteString("</svg>\n")
	return b.String()
}
