package repo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/runup/runup/internal/backend"
	"github.com/runup/runup/internal/chunker"
	"github.com/runup/runup/internal/crypto"
	"github.com/runup/runup/internal/index"
	"github.com/runup/runup/internal/pack"
)

// Format version 1 constants, recorded in the config.
const (
	chunkMin = chunker.MinSize
	chunkAvg = chunker.AvgSize
	chunkMax = chunker.MaxSize
	packSize = 16 << 20
	// maxRawBlob bounds a blob's plaintext: a data chunk is at most
	// chunkMax, a tree blob at most this.
	maxRawBlob = 256 << 20
	// indexEvery is how many uploaded packs go into one index file while a
	// backup runs, so an interrupted backup loses little work; indexBlobs
	// bounds the blobs of one index file, so that reading one costs a few
	// megabytes whatever the packs hold (64 packs of small files hold
	// nearly a million).
	indexEvery = 64
	indexBlobs = 50_000
	// indexAge is the longest a written pack waits for its index file:
	// other hosts backing up into the repository at the same time read
	// index files as they go, and skip what is already there.
	indexAge = 2 * time.Second
	// Data blobs under groupMember bytes are stored in groups, which are
	// sealed once their plaintext reaches groupSize. Compressed together,
	// small files share their common text (licence headers, includes,
	// markup), so a tree of them stores smaller and compresses faster than
	// file by file, while reading one still costs at most one group.
	groupMember = 128 << 10
	groupSize   = 512 << 10
	// maxGroup bounds a group's plaintext when reading one: groupSize plus
	// a member, with room to spare for other writers' choices.
	maxGroup = 4 << 20
)

// packer groups new blobs into packs and uploads them in the background,
// a bounded number at a time. Where the backend can stream (a local disk),
// data packs are written to their file as they grow and never held in
// memory; elsewhere they are built in reused pack-sized buffers.
type packer struct {
	r        *Repository
	mu       sync.Mutex
	cur      [2]*openPack // by blob type
	inflight map[index.Key]struct{}
	sem      chan struct{}
	wg       sync.WaitGroup
	err      error
	pending  []index.PackBlobs // uploaded, not yet in an index file
	pendingN int               // their blobs
	since    time.Time         // when the first of them was uploaded
	grp      *group            // small data blobs waiting to be sealed
	grpBufs  sync.Pool         // group buffers
	bufs     sync.Pool         // compression scratch
	sealBufs sync.Pool         // sealed blobs on their way into a pack
	packBufs sync.Pool         // pack-sized buffers, reused after upload
	stream   backend.Streamer  // nil when the backend cannot stream
	// spool is a local folder where data packs are written as they grow,
	// then uploaded from (backends that save from a reader: S3, SFTP), so
	// that no pack is held in memory, however many upload at once.
	spool string
	saver backend.ReaderSaver
}

// group is small data blobs collected to be compressed and sealed as one.
type group struct {
	buf     []byte
	members []pack.Member
}

// openPack is a pack being filled, and its file when streamed or spooled.
type openPack struct {
	w  *pack.Writer
	s  backend.Stream
	f  *os.File      // spooled: the local file (already unlinked)
	bw *bufio.Writer // spooled: its buffer
}

// discard drops an unfinished pack's file.
func (op *openPack) discard() {
	if op.s != nil {
		_ = op.s.Abort()
	}
	if op.f != nil {
		op.f.Close()
	}
}

func newPacker(r *Repository, uploads int) *packer {
	p := &packer{r: r, inflight: map[index.Key]struct{}{}, sem: make(chan struct{}, uploads)}
	if st, ok := r.be.(backend.Streamer); ok {
		if c, ok := r.be.(interface{ CanStream() bool }); !ok || c.CanStream() {
			p.stream = st
		}
	}
	if rs, ok := r.be.(backend.ReaderSaver); ok && p.stream == nil && r.opts.SpoolDir != "" {
		if c, ok := r.be.(interface{ CanSaveReader() bool }); !ok || c.CanSaveReader() {
			p.saver, p.spool = rs, r.opts.SpoolDir
		}
	}
	return p
}

// packCap fits a full pack, its header and the seal overhead.
func (p *packer) packCap() int { return p.r.cfg.PackSize + 1<<20 }

// newPack starts a pack. A data pack is streamed when the backend can, or
// gets a reused buffer large enough for a full pack and its header, so it
// never grows by doubling; tree packs are small and grow as needed.
func (p *packer) newPack(ctx context.Context, t pack.BlobType) (*openPack, error) {
	if t != pack.Data {
		return &openPack{w: pack.NewWriter(nil)}, nil
	}
	if p.stream != nil {
		s, err := p.stream.Stream(ctx, backend.Data)
		if err != nil {
			return nil, err
		}
		return &openPack{w: pack.NewStreamWriter(s, p.r.key.NewHash()), s: s}, nil
	}
	if p.spool != "" {
		f, err := os.CreateTemp(p.spool, ".pack-*")
		if err != nil {
			return nil, fmt.Errorf("spool a pack: %w", err)
		}
		os.Remove(f.Name()) // the descriptor is enough; nothing to clean up
		bw := bufio.NewWriterSize(f, 256<<10)
		return &openPack{w: pack.NewStreamWriter(bw, p.r.key.NewHash()), f: f, bw: bw}, nil
	}
	if b, ok := p.packBufs.Get().(*[]byte); ok {
		return &openPack{w: pack.NewWriter(*b)}, nil
	}
	return &openPack{w: pack.NewWriter(make([]byte, 0, p.packCap()))}, nil
}

func (p *packer) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
}

// abort waits for uploads and discards packs not yet finished.
func (p *packer) abort() {
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for t, op := range p.cur {
		if op != nil {
			op.discard()
		}
		p.cur[t] = nil
	}
	p.grp = nil
}

// SaveStats tells what saving a blob cost.
type SaveStats struct {
	Added  bool // false if the repository already had the blob
	Stored int  // bytes added to the repository
}

// SaveBlob stores data under id (which must be Hash(data)) unless the
// repository already has it. It returns once the blob is queued; Flush makes
// it durable. Safe for concurrent use: callers are the parallelism.
func (r *Repository) SaveBlob(ctx context.Context, t pack.BlobType, id crypto.ID, data []byte) (SaveStats, error) {
	p := r.packer
	p.mu.Lock()
	if p.err != nil {
		err := p.err
		p.mu.Unlock()
		return SaveStats{}, err
	}
	k := r.BlobKey(t, id)
	_, busy := p.inflight[k]
	if busy || r.Has(t, id) {
		p.mu.Unlock()
		return SaveStats{}, nil
	}
	p.inflight[k] = struct{}{}
	p.mu.Unlock()

	if len(data) > maxRawBlob {
		return SaveStats{}, fmt.Errorf("blob %v of %d bytes is too large", id.Short(), len(data))
	}
	if t == pack.Data && r.cfg.Version >= 2 && !r.cfg.NoGroups && len(data) > 0 && len(data) < groupMember {
		return p.addToGroup(ctx, id, data)
	}
	scratch, _ := p.bufs.Get().(*[]byte)
	if scratch == nil {
		scratch = new([]byte)
	}
	body, compressed := r.comp.compress(*scratch, data, true)
	var flags pack.Flags
	if compressed {
		flags = pack.FlagZstd
		*scratch = body
	}
	stored, err := p.seal(ctx, t, body, func(w *pack.Writer, sealed []byte) {
		w.Add(t, flags, id, len(data), sealed)
	})
	p.bufs.Put(scratch)
	if err != nil {
		return SaveStats{}, err
	}
	return SaveStats{Added: true, Stored: stored}, nil
}

// addToGroup adds a small data blob to the open group, and seals the group
// when it is full.
func (p *packer) addToGroup(ctx context.Context, id crypto.ID, data []byte) (SaveStats, error) {
	p.mu.Lock()
	g := p.grp
	if g == nil {
		g, _ = p.grpBufs.Get().(*group)
		if g == nil {
			g = &group{buf: make([]byte, 0, groupSize+groupMember)}
		}
		p.grp = g
	}
	g.buf = append(g.buf, data...)
	g.members = append(g.members, pack.Member{ID: id, RawLen: len(data)})
	full := len(g.buf) >= groupSize
	if full {
		p.grp = nil
	}
	p.mu.Unlock()
	if !full {
		return SaveStats{Added: true}, nil
	}
	stored, err := p.sealGroup(ctx, g)
	return SaveStats{Added: true, Stored: stored}, err
}

// sealGroup compresses and seals a group into the data pack.
func (p *packer) sealGroup(ctx context.Context, g *group) (int, error) {
	scratch, _ := p.bufs.Get().(*[]byte)
	if scratch == nil {
		scratch = new([]byte)
	}
	// No sample first: a group is many small files, worth compressing.
	body, compressed := p.r.comp.compress(*scratch, g.buf, false)
	var flags pack.Flags
	if compressed {
		flags = pack.FlagZstd
		*scratch = body
	}
	stored, err := p.seal(ctx, pack.Data, body, func(w *pack.Writer, sealed []byte) {
		w.AddGroup(flags, g.members, func(dst []byte) []byte { return append(dst, sealed...) })
	})
	p.bufs.Put(scratch)
	g.buf, g.members = g.buf[:0], g.members[:0]
	p.grpBufs.Put(g)
	return stored, err
}

// seal seals body outside the lock, then under it lets add put the sealed
// bytes into the open pack of type t, starting a pack when needed. A pack it
// closes is uploaded. It returns the sealed length.
func (p *packer) seal(ctx context.Context, t pack.BlobType, body []byte, add func(w *pack.Writer, sealed []byte)) (int, error) {
	r := p.r
	sealBuf, _ := p.sealBufs.Get().(*[]byte)
	if sealBuf == nil {
		sealBuf = new([]byte)
	}
	sealed := r.key.Seal((*sealBuf)[:0], body)
	*sealBuf = sealed
	defer p.sealBufs.Put(sealBuf)

	p.mu.Lock()
	op := p.cur[t]
	var full *openPack
	if op != nil && op.w.Count() > 0 && op.w.Len()+len(sealed) > r.cfg.PackSize {
		// Close the pack before it would pass its size, so a pack buffer
		// of PackSize always suffices.
		full, op = op, nil
	}
	if op == nil {
		var err error
		if op, err = p.newPack(ctx, t); err != nil {
			p.mu.Unlock()
			return 0, err
		}
		p.cur[t] = op
	}
	add(op.w, sealed)
	p.mu.Unlock()
	if full != nil {
		if err := p.upload(ctx, full); err != nil {
			return 0, err
		}
	}
	return len(sealed), nil
}

// upload finishes a pack and writes it in the background; it blocks while
// the upload slots are full, which bounds the memory of queued packs.
func (p *packer) upload(ctx context.Context, op *openPack) error {
	data, id, blobs, err := op.w.Finish(p.r.key)
	if err == nil && op.bw != nil {
		err = op.bw.Flush()
	}
	if err != nil {
		op.discard()
		return fmt.Errorf("write pack: %w", err)
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		op.discard()
		return ctx.Err()
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() { <-p.sem }()
		h := backend.Handle{Type: backend.Data, Name: id.String()}
		var err error
		switch {
		case op.s != nil:
			if err = p.r.guard.check(); err == nil {
				err = op.s.Commit(ctx, h)
			} else {
				_ = op.s.Abort()
			}
		case op.f != nil:
			var size int64
			if size, err = op.f.Seek(0, io.SeekCurrent); err == nil {
				if err = p.r.guard.check(); err == nil {
					err = p.saver.SaveReader(ctx, h, op.f, size)
				}
			}
			op.f.Close()
		default:
			sctx := ctx
			if len(blobs) > 0 && blobs[0].Type == pack.Tree {
				sctx = backend.WithMetadata(ctx)
			}
			err = p.r.saveOnce(sctx, h, data)
			if cap(data) == p.packCap() {
				data = data[:0]
				p.packBufs.Put(&data)
			}
		}
		if err != nil && !errors.Is(err, backend.ErrExists) {
			p.fail(fmt.Errorf("write pack %v: %w", id.Short(), err))
			return
		}
		p.r.idx.AddPack(id, blobs)
		p.mu.Lock()
		for _, b := range blobs {
			delete(p.inflight, p.r.BlobKey(b.Type, b.ID))
		}
		if len(p.pending) == 0 {
			p.since = time.Now()
		}
		p.pending = append(p.pending, index.PackBlobs{ID: id, Blobs: blobs})
		p.pendingN += len(blobs)
		var batch []index.PackBlobs
		if len(p.pending) >= indexEvery || p.pendingN >= indexBlobs || time.Since(p.since) >= indexAge {
			batch, p.pending, p.pendingN = p.pending, nil, 0
		}
		p.mu.Unlock()
		if batch != nil {
			if _, err := p.r.writeIndex(ctx, batch); err != nil {
				p.fail(err)
			}
		}
	}()
	return nil
}

// Flush writes every queued blob and an index file for all new packs. When
// it returns nil, everything saved so far is durable and indexed. Its
// stats count the last group, which no SaveBlob call sealed.
func (r *Repository) Flush(ctx context.Context) (SaveStats, error) {
	p := r.packer
	var st SaveStats
	p.mu.Lock()
	g := p.grp
	p.grp = nil
	p.mu.Unlock()
	if g != nil {
		n, err := p.sealGroup(ctx, g)
		if err != nil {
			return st, err
		}
		st.Stored = n
	}
	p.mu.Lock()
	var open []*openPack
	for t, op := range p.cur {
		switch {
		case op == nil:
		case op.w.Count() > 0:
			open = append(open, op)
		default:
			op.discard()
		}
		p.cur[t] = nil
	}
	p.mu.Unlock()
	for _, op := range open {
		if err := p.upload(ctx, op); err != nil {
			return st, err
		}
	}
	p.wg.Wait()
	p.mu.Lock()
	batch, err := p.pending, p.err
	p.pending, p.pendingN = nil, 0
	p.mu.Unlock()
	if err != nil {
		return st, err
	}
	if len(batch) > 0 {
		if _, err := r.writeIndex(ctx, batch); err != nil {
			return st, err
		}
	}
	return st, nil
}

// typed reports whether a blob's type is part of its identity: from format
// 3 on, a file's chunk and a directory's tree with the same bytes are two
// blobs. Before, one blob of either type served both, which let a planted
// file stand in for a tree (docs/design.md).
func (r *Repository) typed() bool { return r.cfg.Version >= 3 }

// BlobKey is a blob's identity in this repository's format: type and ID
// from format 3 on, the ID alone before.
func (r *Repository) BlobKey(t pack.BlobType, id crypto.ID) index.Key {
	if !r.typed() {
		t = pack.Data
	}
	return index.Key{ID: id, Type: t}
}

// Lookup finds a blob of type t. In format 1 and 2 a blob of the other type
// with the same ID has the same bytes (the ID is their hash) and serves.
func (r *Repository) Lookup(t pack.BlobType, id crypto.ID) (index.Location, bool) {
	loc, ok := r.lookup(t, id)
	if !ok && r.healStore() {
		loc, ok = r.lookup(t, id)
	}
	return loc, ok
}

func (r *Repository) lookup(t pack.BlobType, id crypto.ID) (index.Location, bool) {
	if loc, ok := r.idx.Lookup(t, id); ok {
		return loc, true
	}
	if !r.typed() {
		return r.idx.LookupAny(id)
	}
	return index.Location{}, false
}

// Has reports whether a blob of type t is stored.
func (r *Repository) Has(t pack.BlobType, id crypto.ID) bool {
	_, ok := r.Lookup(t, id)
	return ok
}

// LoadBlob reads, verifies and returns a blob, appending to dst.
func (r *Repository) LoadBlob(ctx context.Context, t pack.BlobType, id crypto.ID, dst []byte) ([]byte, error) {
	loc, ok := r.Lookup(t, id)
	if !ok {
		return nil, fmt.Errorf("%w: %s blob %v is not in the index", ErrDamaged, t, id.Short())
	}
	sealed, err := r.be.Load(ctx, backend.Handle{Type: backend.Data, Name: loc.PackID.String()}, int64(loc.Offset), int64(loc.Length))
	if err != nil {
		return nil, fmt.Errorf("blob %v: %w", id.Short(), err)
	}
	return r.DecodeBlob(loc, sealed, dst)
}

// DecodeBlob opens a blob read from its pack (for a group member, the
// group's sealed bytes), decompresses it and checks that its content hashes
// to its ID. The result is appended to dst[:0].
func (r *Repository) DecodeBlob(loc index.Location, sealed []byte, dst []byte) ([]byte, error) {
	if loc.Grouped() {
		d := Decoder{r: r}
		out, err := d.Decode(loc, sealed)
		if err != nil {
			return nil, err
		}
		return append(dst[:0], out...), nil
	}
	return r.decodeSingle(loc, sealed, dst, nil)
}

func (r *Repository) decodeSingle(loc index.Location, sealed, dst []byte, scratch *[]byte) ([]byte, error) {
	if int(loc.RawLen) > maxRawBlob {
		return nil, fmt.Errorf("%w: blob %v claims %d bytes", ErrDamaged, loc.ID.Short(), loc.RawLen)
	}
	out, err := r.open(loc, sealed, dst, int(loc.RawLen), scratch)
	if err != nil {
		return nil, err
	}
	if len(out) != int(loc.RawLen) || r.key.Hash(out) != loc.ID {
		return nil, fmt.Errorf("%w: blob %v in pack %v does not match its ID", ErrDamaged, loc.ID.Short(), loc.PackID.Short())
	}
	return out, nil
}

// open authenticates and decompresses sealed bytes; rawLen is as for
// decompress. scratch, if not nil, holds the compressed bytes between.
func (r *Repository) open(loc index.Location, sealed, dst []byte, rawLen int, scratch *[]byte) ([]byte, error) {
	if loc.Flags&pack.FlagZstd == 0 {
		out, err := r.key.Open(dst[:0], sealed)
		if err != nil {
			return nil, fmt.Errorf("%w: blob %v in pack %v: %v", ErrDamaged, loc.ID.Short(), loc.PackID.Short(), err)
		}
		return out, nil
	}
	var buf []byte
	if scratch != nil {
		buf = (*scratch)[:0]
	}
	body, err := r.key.Open(buf, sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: blob %v in pack %v: %v", ErrDamaged, loc.ID.Short(), loc.PackID.Short(), err)
	}
	if scratch != nil {
		*scratch = body
	}
	out, err := r.comp.decompress(dst, body, rawLen)
	if err != nil {
		return nil, fmt.Errorf("%w: blob %v in pack %v: %v", ErrDamaged, loc.ID.Short(), loc.PackID.Short(), err)
	}
	return out, nil
}

// A Decoder opens blobs read from packs, like DecodeBlob, and keeps the last
// group it opened: the members of a group decoded one after another cost
// one decryption and decompression. It is not safe for concurrent use.
type Decoder struct {
	r      *Repository
	single []byte // the last ungrouped blob
	sealed []byte // read by Load
	body   []byte // compressed bytes, between opening and decompressing
	group  []byte // the last group's plaintext
	pack   crypto.ID
	offset uint32
	valid  bool
}

// reserve returns b, or a larger buffer when b cannot hold n bytes: at
// least 1 MiB, and doubling up to 16 MiB (beyond the largest chunk), so
// that a huge tree blob costs only its own size.
func reserve(b []byte, n int) []byte {
	if cap(b) >= n || n > maxRawBlob {
		return b
	}
	return make([]byte, 0, max(n, min(2*cap(b), 16<<20), 1<<20))
}

// NewDecoder returns a Decoder for the repository's blobs.
func (r *Repository) NewDecoder() *Decoder { return &Decoder{r: r} }

// Load reads and returns one blob's verified plaintext, reading nothing
// when it is a member of the group decoded last: callers that load blobs
// in pack order read each group once. The result is valid until the next
// call.
func (d *Decoder) Load(ctx context.Context, t pack.BlobType, id crypto.ID) ([]byte, error) {
	loc, ok := d.r.Lookup(t, id)
	if !ok {
		return nil, fmt.Errorf("%w: %s blob %v is not in the index", ErrDamaged, t, id.Short())
	}
	if loc.Grouped() && d.valid && d.pack == loc.PackID && d.offset == loc.Offset {
		return d.Decode(loc, nil)
	}
	h := backend.Handle{Type: backend.Data, Name: loc.PackID.String()}
	var sealed []byte
	var err error
	d.sealed = reserve(d.sealed, int(loc.Length))
	if li, ok := backend.As[backend.LoaderInto](d.r.be); ok && cap(d.sealed) >= int(loc.Length) {
		sealed = d.sealed[:loc.Length]
		err = li.LoadInto(ctx, h, int64(loc.Offset), sealed)
	} else {
		sealed, err = d.r.be.Load(ctx, h, int64(loc.Offset), int64(loc.Length))
	}
	if err != nil {
		return nil, fmt.Errorf("blob %v: %w", id.Short(), err)
	}
	return d.Decode(loc, sealed)
}

// Decode returns the verified plaintext of the blob at loc, read as sealed
// (for a group member, the group's sealed bytes). The result is valid until
// the next call.
func (d *Decoder) Decode(loc index.Location, sealed []byte) ([]byte, error) {
	// Buffers grow with headroom: blobs and groups come in many sizes, and
	// a buffer sized to each would be allocated again for each larger one.
	d.body = reserve(d.body, len(sealed))
	if !loc.Grouped() {
		d.single = reserve(d.single, int(loc.RawLen))
		out, err := d.r.decodeSingle(loc, sealed, d.single, &d.body)
		if err == nil {
			d.single = out
		}
		return out, err
	}
	if !d.valid || d.pack != loc.PackID || d.offset != loc.Offset {
		d.valid = false
		d.group = reserve(d.group, groupSize+groupMember)
		out, err := d.r.open(loc, sealed, d.group, -maxGroup, &d.body)
		if err != nil {
			return nil, err
		}
		d.group, d.pack, d.offset, d.valid = out, loc.PackID, loc.Offset, true
	}
	end := uint64(loc.Inner) + uint64(loc.RawLen)
	if end > uint64(len(d.group)) {
		return nil, fmt.Errorf("%w: blob %v runs past its group in pack %v", ErrDamaged, loc.ID.Short(), loc.PackID.Short())
	}
	out := d.group[loc.Inner:end]
	if d.r.key.Hash(out) != loc.ID {
		return nil, fmt.Errorf("%w: blob %v in pack %v does not match its ID", ErrDamaged, loc.ID.Short(), loc.PackID.Short())
	}
	return out, nil
}

// Known reports whether a blob is stored or being stored, so that callers
// can skip copying data the repository already has.
func (r *Repository) Known(t pack.BlobType, id crypto.ID) bool {
	if r.Has(t, id) {
		return true
	}
	p := r.packer
	p.mu.Lock()
	_, ok := p.inflight[r.BlobKey(t, id)]
	p.mu.Unlock()
	return ok
}
