package query

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// BenchmarkFindAnswer encodes (as Fusion does) and decodes (as a client does) the complete
// answer of P4's largest find, 4,000 paths of the benchmark layout, as Entry messages with
// only_paths and packed with packed_paths.
func BenchmarkFindAnswer(b *testing.B) {
	entries := make([]view.Entry, 4000)
	for i := range entries {
		entries[i].Path = fmt.Sprintf("/upload/submit/%02x/%02x/0b7e6f1c-5a3d-4c1e-9e4b-%012d/sub_%d/data_0042.dat", i%256, i/16%256, i, i%4)
	}
	for _, c := range []struct {
		name string
		resp func() *fustorv1.FindResponse
	}{
		{"entries", func() *fustorv1.FindResponse { return &fustorv1.FindResponse{Entries: toProtos(entries, true)} }},
		{"packed", func() *fustorv1.FindResponse {
			r := &fustorv1.FindResponse{}
			r.PackedPaths, r.DirIndexes = packPaths(entries)
			return r
		}},
	} {
		wire, err := proto.Marshal(c.resp())
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name+"/encode", func(b *testing.B) {
			for b.Loop() {
				if _, err := proto.Marshal(c.resp()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(wire)), "wire-bytes")
		})
		b.Run(c.name+"/decode", func(b *testing.B) {
			for b.Loop() {
				var r fustorv1.FindResponse
				if err := proto.Unmarshal(wire, &r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// packPaths joins the entries' paths, each NUL-ended, as View.FindPaths answers them.
func packPaths(entries []view.Entry) (packed []byte, dirs []uint32) {
	for i := range entries {
		packed = append(append(packed, entries[i].Path...), 0)
		if entries[i].IsDir {
			dirs = append(dirs, uint32(i))
		}
	}
	return packed, dirs
}
