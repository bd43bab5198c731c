package testservices

import (
	"strings"
	"sync"
)

// Buffer collects what a server or a child process writes (its log) while
// a test reads it: a strings.Builder behind a lock.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
