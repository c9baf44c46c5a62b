package fsbatch

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// benchPaths lays files out like the product's benchmark tree:
// /upload/submit/aa/bb/<uuid>/sub_k/data_NNNN.dat.
func benchPaths(n int) []string {
	out := make([]string, 0, n)
	for i := 0; len(out) < n; i++ {
		uuid := fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", i*2654435761, i%65536, i%4096, (i*7)%4096, uint64(i)*11400714819323198485%(1<<48))
		for k := range 4 {
			for f := range 250 {
				if len(out) == n {
					return out
				}
				out = append(out, fmt.Sprintf("/upload/submit/%02x/%02x/%s/sub_%d/data_%04d.dat", i%256, (i/256)%256, uuid, k, f))
			}
		}
	}
	return out
}

// wireBytes encodes n snapshot rows in batches of batchSize the typed way and returns the
// marshalled size of the EventBatch messages.
func typedWireBytes(paths []string, batchSize int) int {
	enc := NewEncoder(0)
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	total := 0
	for i, p := range paths {
		enc.Add(p, 0, uint64(1000+i%5000), base+int64(i)*37_000, uint64(base/1e6), 0)
		if enc.Len() == batchSize || i == len(paths)-1 {
			b, idx := enc.Flush()
			total += proto.Size(&fustorv1.PushRequest{Seq: uint64(i), Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
				Source: fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, SchemaName: "fs", Index: idx, Rows: &fustorv1.EventBatch_Fs{Fs: b}}}})
		}
	}
	return total
}

// fullPathWireBytes encodes the same rows with a full path string per row, in the same
// columnar message (no directory table): the cost the typed schema avoids.
func fullPathWireBytes(paths []string, batchSize int) int {
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	total := 0
	b := &fustorv1.FsBatch{MtimeBase: base}
	prev := base
	for i, p := range paths {
		m := base + int64(i)*37_000
		b.ParentIds = append(b.ParentIds, 0)
		b.Names = append(b.Names, p)
		b.Sizes = append(b.Sizes, uint64(1000+i%5000))
		b.MtimeDeltas = append(b.MtimeDeltas, m-prev)
		prev = m
		if len(b.Names) == batchSize || i == len(paths)-1 {
			total += proto.Size(&fustorv1.PushRequest{Seq: uint64(i), Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
				Source: fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, SchemaName: "fs", Index: uint64(base / 1e6), Rows: &fustorv1.EventBatch_Fs{Fs: b}}}})
			b = &fustorv1.FsBatch{MtimeBase: m}
		}
	}
	return total
}

// rowWireBytes encodes the same rows as one generic row message each, with the full path as
// key: what a naive row-per-message contract costs.
func rowWireBytes(paths []string, batchSize int) int {
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	total := 0
	b := &fustorv1.GenericBatch{}
	for i, p := range paths {
		b.Rows = append(b.Rows, &fustorv1.GenericRow{Key: p, Index: uint64(base / 1e6), Fields: map[string]string{
			"size": fmt.Sprint(1000 + i%5000), "mtime_ns": fmt.Sprint(base + int64(i)*37_000)}})
		if len(b.Rows) == batchSize || i == len(paths)-1 {
			total += proto.Size(&fustorv1.PushRequest{Seq: uint64(i), Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
				Source: fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, SchemaName: "fs", Rows: &fustorv1.EventBatch_Generic{Generic: b}}}})
			b = &fustorv1.GenericBatch{}
		}
	}
	return total
}

func TestTypedSchemaIsSmallerThanFullPaths(t *testing.T) {
	paths := benchPaths(10_000)
	typed, full := typedWireBytes(paths, 1000), fullPathWireBytes(paths, 1000)
	t.Logf("typed %.1f B/row, full paths %.1f B/row", float64(typed)/1e4, float64(full)/1e4)
	if typed*2 > full {
		t.Fatalf("typed schema %d bytes is not under half of full paths %d", typed, full)
	}
}

// BenchmarkWireBytesPerSnapshotEvent reports bytes per snapshot row on the push stream for the
// typed schema and for the same rows with full path strings (run: make bench, or
// go test -run '^$' -bench WireBytes ./sdk/fsbatch).
func BenchmarkWireBytesPerSnapshotEvent(b *testing.B) {
	paths := benchPaths(100_000)
	for _, tc := range []struct {
		name string
		f    func([]string, int) int
	}{{"typed", typedWireBytes}, {"full-path-columns", fullPathWireBytes}, {"full-path-rows", rowWireBytes}} {
		b.Run(tc.name, func(b *testing.B) {
			var n int
			for b.Loop() {
				n = tc.f(paths, 1000)
			}
			b.ReportMetric(float64(n)/float64(len(paths)), "B/row")
		})
	}
}

// BenchmarkDecode measures Fusion's batch decode cost per row.
// BenchmarkDecode decodes a 1,000-row batch into a reused slice, and into a fresh one as
// Fusion's receiver does (its rows go on to the pipe's queue).
func BenchmarkDecode(b *testing.B) {
	paths := benchPaths(1000)
	enc := NewEncoder(0)
	for i, p := range paths {
		enc.Add(p, 0, uint64(i), int64(i), 1, 0)
	}
	batch, idx := enc.Flush()
	raw, _ := proto.Marshal(batch)
	for _, fresh := range []bool{false, true} {
		b.Run(map[bool]string{false: "reused", true: "fresh"}[fresh], func(b *testing.B) {
			rows := make([]Row, 0, len(paths))
			b.ReportAllocs()
			for b.Loop() {
				m := &fustorv1.FsBatch{}
				if err := proto.Unmarshal(raw, m); err != nil {
					b.Fatal(err)
				}
				if fresh {
					rows = nil
				}
				var err error
				if rows, _, _, err = NewDecoder(0).Decode(m, idx, rows[:0]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(paths)), "ns/row")
		})
	}
}
