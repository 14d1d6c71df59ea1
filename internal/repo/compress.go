package repo

import (
	"fmt"
	"runtime"

	"github.com/klauspost/compress/zstd"
)

// Compression is how new blobs are compressed.
type Compression int

// Compression settings, as in runup.yaml.
//
// auto is zstd's fastest level: small files are compressed in groups, and
// in groups the fastest level stores a source tree smaller than the
// default level does file by file, at about 0.7 times its CPU. fastest is
// the same setting under its old name; better is zstd's default level.
const (
	CompressAuto Compression = iota
	CompressOff
	CompressFastest
	CompressMax
	CompressBetter
)

// ParseCompression reads a runup.yaml compression value.
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "", "auto":
		return CompressAuto, nil
	case "off":
		return CompressOff, nil
	case "fastest":
		return CompressFastest, nil
	case "better":
		return CompressBetter, nil
	case "max":
		return CompressMax, nil
	}
	return 0, fmt.Errorf("unknown compression %q (want off, auto, fastest, better or max)", s)
}

// encoderWindow bounds each encoder's history. Almost every blob is
// smaller (files under 512 KiB are one blob, chunks average 1 MiB), so a
// larger window buys little ratio for a lot of memory.
const encoderWindow = 2 << 20

type compressor struct {
	mode   Compression
	enc    *zstd.Encoder
	dec    *zstd.Decoder
	sample *zstd.Encoder // fastest level, to test a chunk before the real work
}

// sampleSize is how much of a large chunk is tried first: data that does
// not shrink there (compressed media, archives, encrypted files) is stored
// as it is without paying for a full compression.
const sampleSize = 32 << 10

func newCompressor(mode Compression) (*compressor, error) {
	level := zstd.SpeedFastest
	switch mode {
	case CompressBetter:
		level = zstd.SpeedDefault
	case CompressMax:
		level = zstd.SpeedBestCompression
	}
	n := runtime.GOMAXPROCS(0)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(n),
		zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(encoderWindow),
		// Entropy-code literals even where no matches are found: small files
		// of skewed text (tokens, base64, logs) otherwise go in raw.
		zstd.WithAllLitEntropyCompression(true))
	if err != nil {
		return nil, err
	}
	// Restore reads with two workers a core; each needs a decoder of its own.
	// The storage is not trusted: a decode never produces more than the
	// caller's buffer holds (the blob's stated length), whatever the frames
	// claim, and no frame may ask for a window beyond the largest blob.
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(2*n), zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(maxRawBlob), zstd.WithDecoderMaxWindow(2*chunkMax))
	if err != nil {
		return nil, err
	}
	sample, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(n),
		zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(1<<17),
		zstd.WithAllLitEntropyCompression(true))
	if err != nil {
		return nil, err
	}
	return &compressor{mode: mode, enc: enc, dec: dec, sample: sample}, nil
}

// compress returns the bytes to store and whether they are compressed. Data
// that does not shrink by at least 1/32 is stored as it is, which makes
// already compressed files cost nothing to restore. With probe, a large
// input is sampled first.
func (c *compressor) compress(dst, src []byte, probe bool) ([]byte, bool) {
	if c.mode == CompressOff || len(src) < 64 {
		return src, false
	}
	if probe && len(src) >= 4*sampleSize {
		mid := len(src) / 2
		probe := c.sample.EncodeAll(src[mid:mid+sampleSize], dst[:0])
		if len(probe) >= sampleSize-sampleSize/32 {
			return src, false
		}
	}
	out := c.enc.EncodeAll(src, dst[:0])
	if len(out) >= len(src)-len(src)/32 {
		return src, false
	}
	return out, true
}

// maxUnsizedFrame bounds a group whose frame does not state its size. The
// encoder leaves the size out only below 256 bytes (a backup's last group
// can be that small), so this is generous and still cheap.
const maxUnsizedFrame = 64 << 10

// decompress decompresses src, which must hold exactly rawLen bytes, or,
// with rawLen < 0 (a group), the size its frame states, at most -rawLen
// (maxUnsizedFrame when it states none). The work is bounded by that size:
// the decoder writes into a buffer of exactly that capacity and fails
// rather than grow it, however many frames follow or whatever they claim.
func (c *compressor) decompress(dst, src []byte, rawLen int) ([]byte, error) {
	n, err := frameSize(src)
	exact := true
	switch {
	case rawLen < 0 && err != nil:
		rawLen, exact = min(-rawLen, maxUnsizedFrame), false
	case rawLen < 0 && n > uint64(-rawLen):
		return nil, fmt.Errorf("group of %d bytes is over the limit of %d", n, -rawLen)
	case rawLen < 0:
		rawLen = int(n)
	case err == nil && n != uint64(rawLen):
		return nil, fmt.Errorf("frame states %d bytes, want %d", n, rawLen)
	}
	if cap(dst) < rawLen {
		dst = make([]byte, 0, rawLen)
	}
	out, err := c.dec.DecodeAll(src, dst[:0:rawLen])
	if err != nil {
		return nil, err
	}
	if exact && len(out) != rawLen {
		return nil, fmt.Errorf("decompressed %d bytes, want %d", len(out), rawLen)
	}
	// The limit above is on this call only: give the buffer back with its
	// whole capacity, which callers reuse for larger blobs.
	if len(out) > 0 && &out[0] == &dst[:1][0] {
		out = dst[:len(out)]
	}
	return out, nil
}

// frameSize reads the content size a zstd frame header declares; RunUp's
// encoder always writes it.
func frameSize(src []byte) (uint64, error) {
	var h zstd.Header
	if err := h.Decode(src); err != nil {
		return 0, err
	}
	if !h.HasFCS {
		return 0, fmt.Errorf("frame does not declare its size")
	}
	return h.FrameContentSize, nil
}
