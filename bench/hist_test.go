package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsContiguous(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 255, 256, 257, 511, 512, 1000, 1 << 20, 1<<40 + 12345, math.MaxInt64} {
		b := bucket(v)
		if b < prev || b >= histBuckets {
			t.Fatalf("bucket(%d) = %d (prev %d, max %d)", v, b, prev, histBuckets)
		}
		prev = b
		if rv := bucketValue(b); math.Abs(float64(rv-v)) > float64(v)/float64(halfCount)+0.5 {
			t.Errorf("bucketValue(bucket(%d)) = %d: too far", v, rv)
		}
	}
	for v := int64(0); v < 1<<16; v++ {
		if b, b1 := bucket(v), bucket(v+1); b1 != b && b1 != b+1 {
			t.Fatalf("bucket(%d)=%d, bucket(%d)=%d", v, b, v+1, b1)
		}
	}
}

func TestQuantileMatchesSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h histogram
	var all []int64
	for range 100000 {
		v := int64(rng.ExpFloat64() * 200e3) // ~200 µs mean, long tail
		h.record(time.Duration(v))
		all = append(all, v)
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.99, 0.999, 1} {
		k := int(math.Ceil(q*float64(len(all)))) - 1
		want := float64(all[k])
		got := float64(h.quantile(q))
		if math.Abs(got-want) > want/float64(halfCount) {
			t.Errorf("q%.3f = %.0f, exact %.0f", q, got, want)
		}
	}
	var m histogram
	m.merge(&h)
	m.merge(&h)
	if m.n != 2*h.n || m.quantile(0.5) != h.quantile(0.5) {
		t.Errorf("merge: n=%d p50=%v, want n=%d p50=%v", m.n, m.quantile(0.5), 2*h.n, h.quantile(0.5))
	}
}
