package index

import (
	"bufio"
	"bytes"
	"container/heap"
	"io"
	"os"
	"slices"
)

// Sorter sorts fixed-size records by a key prefix in bounded memory:
// records gather in a buffer of at most a budget of bytes, which is sorted
// and written to a temporary file as a run when full; reading merges the
// runs. Sorting a hundred million records takes the budget, not their size.
type Sorter struct {
	rec, key int
	budget   int
	dir      string
	buf      []byte
	runs     []*os.File
	err      error
}

// NewSorter sorts records of rec bytes by their first key bytes, with runs
// spilled into dir (a temporary folder of the caller's).
func NewSorter(dir string, rec, key, budget int) *Sorter {
	return &Sorter{rec: rec, key: key, budget: max(budget, 64*rec), dir: dir}
}

// Add copies a record in.
func (s *Sorter) Add(r []byte) error {
	if s.err != nil {
		return s.err
	}
	s.buf = append(s.buf, r[:s.rec]...)
	if len(s.buf) >= s.budget {
		s.err = s.spill()
	}
	return s.err
}

// sorted returns the records of buf in key order.
func (s *Sorter) sorted() []int32 {
	n := len(s.buf) / s.rec
	order := make([]int32, n)
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int {
		return bytes.Compare(s.buf[int(a)*s.rec:int(a)*s.rec+s.key], s.buf[int(b)*s.rec:int(b)*s.rec+s.key])
	})
	return order
}

func (s *Sorter) spill() error {
	f, err := os.CreateTemp(s.dir, "run-*")
	if err != nil {
		return err
	}
	os.Remove(f.Name()) // gone when closed
	w := bufio.NewWriterSize(f, 1<<20)
	for _, i := range s.sorted() {
		if _, err := w.Write(s.buf[int(i)*s.rec : (int(i)+1)*s.rec]); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	s.runs = append(s.runs, f)
	s.buf = s.buf[:0]
	return nil
}

// fanIn bounds the runs merged at once, and so the merge's buffers.
const fanIn = 64

// Each calls fn with every record in key order (records of equal keys in
// the order they were added). The record is valid only during the call.
// Spilled runs are first merged, fanIn at a time, into one: later calls
// read it straight.
func (s *Sorter) Each(fn func(r []byte) error) error {
	if s.err != nil {
		return s.err
	}
	if len(s.runs) == 0 {
		for _, i := range s.sorted() {
			if err := fn(s.buf[int(i)*s.rec : (int(i)+1)*s.rec]); err != nil {
				return err
			}
		}
		return nil
	}
	if len(s.buf) > 0 {
		if err := s.spill(); err != nil {
			return err
		}
	}
	for len(s.runs) > fanIn {
		if err := s.mergeRuns(); err != nil {
			return err
		}
	}
	return s.merge(s.runs, fn)
}

// mergeRuns merges the runs fanIn at a time into longer ones.
func (s *Sorter) mergeRuns() error {
	var next []*os.File
	for start := 0; start < len(s.runs); start += fanIn {
		group := s.runs[start:min(start+fanIn, len(s.runs))]
		f, err := os.CreateTemp(s.dir, "run-*")
		if err != nil {
			return err
		}
		os.Remove(f.Name())
		w := bufio.NewWriterSize(f, 1<<20)
		if err := s.merge(group, func(r []byte) error { _, err := w.Write(r); return err }); err != nil {
			f.Close()
			return err
		}
		if err := w.Flush(); err != nil {
			f.Close()
			return err
		}
		for _, g := range group {
			g.Close()
		}
		next = append(next, f)
	}
	s.runs = next
	return nil
}

// merge calls fn with the records of runs in key order.
func (s *Sorter) merge(runs []*os.File, fn func(r []byte) error) error {
	h := &runHeap{key: s.key}
	for i, f := range runs {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		rr := &run{r: bufio.NewReaderSize(f, 64<<10), rec: make([]byte, s.rec), order: i}
		ok, err := rr.next()
		if err != nil {
			return err
		}
		if ok {
			h.runs = append(h.runs, rr)
		}
	}
	heap.Init(h)
	for h.Len() > 0 {
		top := h.runs[0]
		if err := fn(top.rec); err != nil {
			return err
		}
		ok, err := top.next()
		if err != nil {
			return err
		}
		if ok {
			heap.Fix(h, 0)
		} else {
			heap.Pop(h)
		}
	}
	return nil
}

// Close removes the runs.
func (s *Sorter) Close() {
	for _, f := range s.runs {
		f.Close()
	}
	s.runs, s.buf = nil, nil
}

type run struct {
	r     *bufio.Reader
	rec   []byte
	order int
}

func (r *run) next() (bool, error) {
	if _, err := io.ReadFull(r.r, r.rec); err != nil {
		if err == io.EOF {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

type runHeap struct {
	runs []*run
	key  int
}

func (h *runHeap) Len() int { return len(h.runs) }
func (h *runHeap) Less(i, j int) bool {
	if c := bytes.Compare(h.runs[i].rec[:h.key], h.runs[j].rec[:h.key]); c != 0 {
		return c < 0
	}
	return h.runs[i].order < h.runs[j].order // equal keys keep their order
}
func (h *runHeap) Swap(i, j int) { h.runs[i], h.runs[j] = h.runs[j], h.runs[i] }
func (h *runHeap) Push(x any)    { h.runs = append(h.runs, x.(*run)) }
func (h *runHeap) Pop() any {
	x := h.runs[len(h.runs)-1]
	h.runs = h.runs[:len(h.runs)-1]
	return x
}
