package importer_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/importer"
)

// discard is a BulkStore that stores nothing: it measures the reader,
// the validation and the pipeline alone.
type discard struct{ directory.Store }

func (discard) BeginBulk(context.Context, directory.BulkOptions) (directory.Bulk, error) {
	return discardBulk{}, nil
}

type discardBulk struct{}

func (discardBulk) Concurrency() int { return 2 }
func (discardBulk) Write(_ context.Context, e []directory.BulkEntry) (directory.BulkResult, error) {
	return directory.BulkResult{Created: len(e)}, nil
}
func (discardBulk) Finish(context.Context, []string) (int64, error) { return 0, nil }
func (discardBulk) Close(context.Context) error                     { return nil }

// benchFile is n users in the benchmark population's shape.
func benchFile(format importer.Format, n int) []byte {
	var b bytes.Buffer
	switch format {
	case importer.CSV:
		b.WriteString("user,password_hash,tohost,quota,name\n")
	case importer.LDIF:
		b.WriteString("dn: dc=example,dc=com\nobjectClass: dcObject\ndc: example\n\n")
	}
	for i := range n {
		login := fmt.Sprintf("user%07d@domain%02d.example", i, i%100)
		hash := "{SSHA}AMut7XaZFkRp1/2md9R/ykBZvpJgU+iVJDjc3w=="
		switch format {
		case importer.CSV:
			fmt.Fprintf(&b, "%s,%s,backend%d.example,%d,Grace Hall\n", login, hash, i%4+1, 104857600)
		case importer.NWAuth:
			fmt.Fprintf(&b, "%s:%s:tohost=\"backend%d.example\" quota=\"%d\" name=\"Grace Hall\"\n", login, hash, i%4+1, 104857600)
		case importer.LDIF:
			fmt.Fprintf(&b, "dn: uid=%s,ou=users,dc=example,dc=com\nobjectClass: inetOrgPerson\nobjectClass: inetLocalMailRecipient\n"+
				"uid: %s\nmail: %s\ncn: Grace Hall\nsn: Hall\nuserPassword: %s\nmailHost: backend%d.example\ndescription: quota=104857600\n\n",
				login, login, login, hash, i%4+1)
		}
	}
	return b.Bytes()
}

// BenchmarkRead: records per second through reader, validation and
// pipeline, per format, into a store that keeps nothing.
func BenchmarkRead(b *testing.B) {
	for _, f := range importer.Formats {
		b.Run(string(f), func(b *testing.B) {
			data := benchFile(f, 100_000)
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for range b.N {
				st, err := importer.Import(context.Background(), discard{}, importer.Input{Name: "x." + string(f),
					Size: int64(len(data)), Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }},
					importer.Options{Format: f})
				if err != nil || st.Created != 100_000 {
					b.Fatal(st, err)
				}
			}
			b.ReportMetric(float64(b.N)*100_000/b.Elapsed().Seconds(), "users/s")
		})
	}
}
