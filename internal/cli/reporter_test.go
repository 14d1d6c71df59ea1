package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Restore workers and the restore walk report at once: every line arrives
// whole and every problem is counted (run with -race).
func TestReporterConcurrent(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &reporter{g: &globals{stderr: f}}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				r.Error("path", errors.New("broken"))
				r.Warning("path", "odd")
			}
		}()
	}
	wg.Wait()
	if r.errors != 800 || r.warnings != 800 {
		t.Fatalf("counted %d errors and %d warnings, want 800 each", r.errors, r.warnings)
	}
	b, _ := os.ReadFile(f.Name())
	if n := strings.Count(string(b), "error: path: broken\n"); n != 800 {
		t.Fatalf("%d whole error lines, want 800", n)
	}
}
