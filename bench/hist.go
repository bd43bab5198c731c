package bench

import (
	"math/bits"
	"time"
)

// histogram records latencies in log-linear buckets, the scheme of
// HdrHistogram: values below 2^subBits nanoseconds are exact, larger ones fall
// into buckets whose width is at most 1/2^(subBits-1) of their value (0.8%
// with subBits = 8). Recording is a few instructions and no allocation, and
// memory is fixed (about 60 KiB) however long the run, so a worker keeps its
// own histogram and the run merges them at the end.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    int64
}

const (
	subBits     = 8
	subCount    = 1 << subBits // exact values below this
	halfCount   = subCount / 2
	histBuckets = subCount + (64-subBits)*halfCount
)

// bucket returns the bucket index of v (nanoseconds, >= 0).
func bucket(v int64) int {
	if v < subCount {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - subBits // >= 1
	top := int(uint64(v) >> shift)           // in [halfCount, subCount)
	return subCount + (shift-1)*halfCount + top - halfCount
}

// bucketValue returns a representative value of bucket b: the value itself
// for exact buckets, else the middle of the bucket's range.
func bucketValue(b int) int64 {
	if b < subCount {
		return int64(b)
	}
	shift := (b-subCount)/halfCount + 1
	top := int64((b-subCount)%halfCount + halfCount)
	lo := top << shift
	return lo + (int64(1)<<shift)/2
}

func (h *histogram) record(d time.Duration) {
	v := int64(d)
	h.counts[bucket(v)]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (nearest rank) of the recorded values.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.9999999)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketValue(b), h.max))
		}
	}
	return time.Duration(h.max)
}
