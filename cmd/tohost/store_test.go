package main

import (
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestClusterURL(t *testing.T) {
	for _, c := range []struct {
		spec, url string
		more      []string
		cluster   bool
	}{
		{"redis://h:6379/0", "", nil, false},
		{"unix:///run/redis.sock", "", nil, false},
		{"h1:7000,h2:7001,h3:7002", "redis://h1:7000", []string{"h2:7001", "h3:7002"}, true},
		{"redis+cluster://h1:7000,h2:7001", "redis://h1:7000", []string{"h2:7001"}, true},
		{"rediss+cluster://u:pw@h1:7000,h2:7001/?dial_timeout=2s", "rediss://u:pw@h1:7000/?dial_timeout=2s", []string{"h2:7001"}, true},
		{"redis+cluster://h1:7000", "redis://h1:7000", []string{}, true},
	} {
		u, more, ok := clusterURL(c.spec)
		if u != c.url || ok != c.cluster || (ok && !slices.Equal(more, c.more)) {
			t.Errorf("clusterURL(%q) = %q, %q, %v", c.spec, u, more, ok)
		}
	}
}

func TestNewRedisClient(t *testing.T) {
	for spec, cluster := range map[string]bool{
		"redis://127.0.0.1:6379/0":                      false,
		"127.0.0.1:7000,127.0.0.1:7001":                 true,
		"redis+cluster://127.0.0.1:7000,127.0.0.1:7001": true,
	} {
		c, err := newRedisClient(spec, 0, 0)
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		if _, ok := c.(*redis.ClusterClient); ok != cluster {
			t.Errorf("%s: cluster client %v", spec, ok)
		}
		c.Close()
	}
	for _, bad := range []string{"redis+cluster://h1:7000,nope", "h1:7000,:1"} {
		if _, err := newRedisClient(bad, 0, 0); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
