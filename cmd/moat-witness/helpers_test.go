package main

import (
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncWriter serialises writes to w, for logs written by a server
// goroutine and read by the test.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// waitAddr waits for serve to write its listening address to file.
func waitAddr(t *testing.T, file string, done <-chan error) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(file); err == nil {
			return strings.TrimSpace(string(b))
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("serve did not start")
	return ""
}
