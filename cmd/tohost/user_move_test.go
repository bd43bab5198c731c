package main

import "testing"

// TestBackendIMAPAddr: tohost values read as the proxy reads them.
func TestBackendIMAPAddr(t *testing.T) {
	for in, want := range map[string]string{
		"backend1":        "backend1:143",
		"backend1:2143":   "backend1:2143",
		"127.0.0.2":       "127.0.0.2:143",
		"127.0.0.2:993":   "127.0.0.2:993",
		"::1":             "[::1]:143",
		"[::1]":           "[::1]:143",
		"[2001:db8::1]:7": "[2001:db8::1]:7",
	} {
		if got, err := backendIMAPAddr(in, 143); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "backend1:0", "backend1:x", ":143"} {
		if got, err := backendIMAPAddr(bad, 143); err == nil {
			t.Errorf("%q: %q, want an error", bad, got)
		}
	}
}
