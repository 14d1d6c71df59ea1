package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/backend/local"
	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/index"
	"github.com/runup/runup/internal/pack"
	"github.com/runup/runup/internal/repo"
	"github.com/runup/runup/internal/tree"
)

// manyChunks builds a repository of n chunks without storing their data,
// then measures what a user of such a repository does: an incremental
// backup of new data into it, a restore of one file, and a prune. The
// repository is real in everything RunUp reads to decide: index files,
// pack headers, trees and the job record are written as a backup writes
// them; only the chunks' bytes are missing, their packs sparse files of the
// right size. One file of the job is real, to be restored.
//
// Virtual chunks are 64 KiB; a pack holds 256 of them (16 MiB); a file 1,000
// chunks and a directory 100 files, so 100M chunks make 390,625 packs, 2,000
// index files and 1,000 directories.
func manyChunks(work, bin, out string, n int) {
	const (
		chunkLen  = 64 << 10
		perPack   = 256
		perFile   = 1000
		filesPer  = 100
		perDir    = perFile * filesPer
		password  = "bench-password"
		realBlobs = 64
	)
	ctx := context.Background()
	repoDir := filepath.Join(work, "repo")
	lb, err := local.Open(repoDir)
	must(err)
	must(lb.Create())
	_, err = repo.Init(ctx, lb, repo.InitOptions{Password: []byte(password)})
	must(err)
	r, err := repo.Open(ctx, lb, func() ([]byte, error) { return []byte(password), nil }, repo.Options{})
	must(err)
	key := r.Key()
	start := time.Now()

	// The real file: random chunks, stored as a backup stores them.
	rnd := rand.New(rand.NewPCG(1, 1))
	var real []crypto.ID
	var realSize uint64
	for range realBlobs {
		b := make([]byte, chunkLen)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		id := key.Hash(b)
		_, err := r.SaveBlob(ctx, pack.Data, id, b)
		must(err)
		real = append(real, id)
		realSize += chunkLen
	}
	_, err = r.Flush(ctx)
	must(err)

	// Virtual chunks: chunk i's ID is the keyed hash of i.
	chunkID := func(i int) crypto.ID {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(i))
		return key.Hash(b[:])
	}
	sealed := uint32(chunkLen + key.Overhead())
	var batch []index.PackBlobs
	blobs := 0
	for p := 0; p*perPack < n; p++ {
		var pb index.PackBlobs
		for j := 0; j < perPack && p*perPack+j < n; j++ {
			pb.Blobs = append(pb.Blobs, pack.Blob{Type: pack.Data, ID: chunkID(p*perPack + j), Offset: uint32(j) * sealed,
				Length: sealed, RawLen: chunkLen})
		}
		// A pack file of the right size, sparse but for its real header.
		hdr := pack.SealHeader(key, pb.Blobs)
		var rid [crypto.IDSize]byte
		binary.LittleEndian.PutUint64(rid[:], uint64(p))
		pb.ID = key.Hash(append(rid[:], "virtual pack"...))
		name := pb.ID.String()
		path := filepath.Join(repoDir, filepath.FromSlash(backend.Path(backend.Handle{Type: backend.Data, Name: name})))
		must(os.MkdirAll(filepath.Dir(path), 0o700))
		f, err := os.Create(path)
		must(err)
		dataLen := int64(len(pb.Blobs)) * int64(sealed)
		_, err = f.WriteAt(hdr, dataLen)
		must(err)
		must(f.Close())
		batch = append(batch, pb)
		blobs += len(pb.Blobs)
		if blobs >= 50_000 {
			_, err := r.WriteIndex(ctx, batch)
			must(err)
			batch, blobs = nil, 0
		}
		if p%20_000 == 0 {
			log.Printf("manychunks: %d of %d chunks indexed (%v)", p*perPack, n, time.Since(start).Round(time.Second))
		}
	}
	if len(batch) > 0 {
		_, err := r.WriteIndex(ctx, batch)
		must(err)
	}

	// The job: directories of files of virtual chunks, and the real file.
	var dirs []tree.Node
	for d := 0; d*perDir < n; d++ {
		var files []tree.Node
		for f := 0; f < filesPer && d*perDir+f*perFile < n; f++ {
			node := tree.Node{Name: fmt.Sprintf("f%03d", f), Type: tree.File, Mode: 0o644}
			for c := 0; c < perFile && d*perDir+f*perFile+c < n; c++ {
				node.Content = append(node.Content, chunkID(d*perDir+f*perFile+c))
			}
			node.Size = uint64(len(node.Content)) * chunkLen
			files = append(files, node)
		}
		if d == 0 {
			files = append(files, tree.Node{Name: "real", Type: tree.File, Mode: 0o644, Size: realSize, Content: real})
		}
		tr := &tree.Tree{Nodes: files}
		tr.Sort()
		id, _, err := r.SaveTree(ctx, tr)
		must(err)
		dirs = append(dirs, tree.Node{Name: fmt.Sprintf("d%04d", d), Type: tree.Dir, Mode: 0o755, Subtree: id})
	}
	root, _, err := r.SaveTree(ctx, &tree.Tree{Nodes: dirs})
	must(err)
	_, err = r.Flush(ctx)
	must(err)
	host, _ := os.Hostname()
	must(r.SaveJob(ctx, &repo.Job{Project: "big", Time: time.Now(), Host: host, Base: "/", Tree: root}))
	must(r.Close())
	log.Printf("manychunks: repository of %d chunks made in %v", n, time.Since(start).Round(time.Second))

	// What a user does with it, each command measured.
	env := []string{"RUNUP_PASSWORD=" + password, "XDG_CACHE_HOME=" + filepath.Join(work, "cache"),
		"RUNUP_KNOWN_REPOSITORIES=" + filepath.Join(work, "known.json")}
	src := filepath.Join(work, "new")
	must(os.MkdirAll(src, 0o755))
	writeRandomFile(filepath.Join(src, "new-data"), 100<<20, 7)
	makeSmallFiles(filepath.Join(src, "small"), 20_000)
	type step struct{ name, what string }
	var rows []string
	measure := func(s step, args ...string) {
		sm, err := run(work, env, append([]string{bin, "--repo", repoDir}, args...)...)
		if err != nil {
			log.Fatalf("%s: %v", s.name, err)
		}
		log.Printf("manychunks: %s: %v, %d MiB", s.name, sm.dur.Round(10*time.Millisecond), sm.rss>>10)
		rows = append(rows, fmt.Sprintf("| %s | %s | %.1f s | %d MiB |", s.name, s.what, sm.dur.Seconds(), sm.rss>>10))
	}
	measure(step{"index store", "the first command builds the local index from every index file"}, "-q", "ls", "latest", "d0000")
	measure(step{"incremental backup", "a 100 MiB file and 20,000 small files, every chunk looked up"}, "-q", "backup", "--project", "new", src)
	measure(step{"restore of one file", fmt.Sprintf("%d MiB, from the big job", realSize>>20)},
		"-q", "restore", "big", "-f", "-l", filepath.Join(work, "out"), "--include", "d0000/real")
	measure(step{"prune", "walks every job, joins the used chunks with the index: nothing to remove"}, "-q", "prune")
	table := fmt.Sprintf("%d chunks (%d packs of 16 MiB, data not stored), local disk; %s.\n\n| step | what | time | peak memory |\n| --- | --- | --- | --- |\n%s\n",
		n, (n+perPack-1)/perPack, time.Now().Format("2006-01-02"), strings.Join(rows, "\n"))
	fmt.Print(table)
	if out != "" {
		must(replaceSection(out, fmt.Sprintf("manychunks-%d", n), table))
	}
}
