// Package chunker splits a stream into content-defined chunks with FastCDC.
//
// The gear table is derived from a per-repository secret, so chunk
// boundaries (and so chunk sizes) do not reveal which known files a
// repository holds.
package chunker

import (
	"fmt"
	"io"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc" // registers fastcdc
)

// Sizes of the repository format version 1.
const (
	MinSize = 512 << 10
	AvgSize = 1 << 20
	MaxSize = 8 << 20
)

// algorithm is the spec-faithful FastCDC; pinning the versioned name keeps
// boundaries stable across library releases.
const algorithm = "fastcdc-v1.0.0"

// Chunker cuts one stream at a time; Reset moves it to the next. It is not
// safe for concurrent use.
type Chunker struct {
	c *chunkers.Chunker
}

// New returns a chunker keyed by key, reading through buf (at least MaxSize
// bytes, ideally 2*MaxSize) so callers can pool buffers.
func New(key []byte, buf []byte) (*Chunker, error) {
	opts := &chunkers.ChunkerOpts{MinSize: MinSize, NormalSize: AvgSize, MaxSize: MaxSize, Key: key}
	c, err := chunkers.NewChunkerBuffer(algorithm, eofReader{}, opts, buf)
	if err != nil {
		return nil, fmt.Errorf("chunker: %w", err)
	}
	return &Chunker{c: c}, nil
}

// Reset starts a new stream.
func (c *Chunker) Reset(r io.Reader) { c.c.Reset(r) }

// Next returns the next chunk, valid until the following call; io.EOF with
// an empty chunk ends the stream.
func (c *Chunker) Next() ([]byte, error) {
	for {
		chunk, err := c.c.Next()
		if err == io.EOF {
			if len(chunk) > 0 {
				// The library returns the last chunk together with EOF;
				// hand it out alone so callers see a plain stream.
				c.c.Reset(eofReader{})
				return chunk, nil
			}
			return nil, io.EOF
		}
		if err != nil {
			return nil, err
		}
		if len(chunk) == 0 {
			continue
		}
		return chunk, nil
	}
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
