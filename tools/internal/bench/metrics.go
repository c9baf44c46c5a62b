package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// handlingMetric is Fusion's per-method histogram of the time a unary call spends in its
// interceptors and handler (authentication, the query, building the answer): the server's
// share of a query's latency, without the answer's encoding, the client, the network and the
// machine's scheduling of either side.
const handlingMetric = "fustor_grpc_server_handling_seconds_bucket"

// histogram is one method's cumulative bucket counts, by upper bound in seconds (+Inf last).
type histogram struct {
	bounds []float64
	counts []float64
}

// handling scrapes Fusion's /metrics (on its debug endpoint) for method's histogram.
func (f *fusionProc) handling(ctx context.Context, method string) (h histogram, err error) {
	err = f.debugGet(ctx, "/metrics", func(r io.Reader) (err error) { h, err = parseHandling(r, method); return err })
	return h, err
}

// receivedMetric is Fusion's count of the bytes read on its gRPC listener, HTTP/2 framing
// included: P6's numerator, without a proxy in the agent's path (which would cost P1 a copy of
// every byte through this process).
const receivedMetric = "fustor_grpc_server_received_bytes_total"

// counter scrapes Fusion's /metrics for a metric without labels.
func (f *fusionProc) counter(ctx context.Context, name string) (v float64, err error) {
	err = f.debugGet(ctx, "/metrics", func(r io.Reader) (err error) { v, err = parseCounter(r, name); return err })
	return v, err
}

// parseCounter reads the value of an unlabelled metric from the Prometheus text format.
func parseCounter(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("parse %s %q: %w", name, v, err)
			}
			return n, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read fusion metrics: %w", err)
	}
	return 0, fmt.Errorf("fusion metrics have no %s", name)
}

// parseHandling reads method's buckets of handlingMetric from the Prometheus text format.
func parseHandling(r io.Reader, method string) (histogram, error) {
	var h histogram
	want := `method="` + method + `"`
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, handlingMetric+"{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok || !slices.Contains(strings.Split(labels, ","), want) {
			continue
		}
		_, le, ok := strings.Cut(labels, `le="`)
		if !ok {
			continue
		}
		le, _, _ = strings.Cut(le, `"`)
		bound, err := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
		if err != nil {
			return histogram{}, fmt.Errorf("parse bucket bound %q: %w", le, err)
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return histogram{}, fmt.Errorf("parse bucket count %q: %w", value, err)
		}
		h.bounds, h.counts = append(h.bounds, bound), append(h.counts, n)
	}
	if err := sc.Err(); err != nil {
		return histogram{}, fmt.Errorf("read fusion metrics: %w", err)
	}
	return h, nil
}

// since returns the observations made after old, a scrape of the same histogram.
func (h histogram) since(old histogram) histogram {
	out := histogram{bounds: h.bounds, counts: slices.Clone(h.counts)}
	if len(old.counts) == len(h.counts) {
		for i := range out.counts {
			out.counts[i] -= old.counts[i]
		}
	}
	return out
}

// plus adds the observations of other, a histogram of the same method (or empty).
func (h histogram) plus(other histogram) histogram {
	if len(other.counts) != len(h.counts) {
		return h
	}
	out := histogram{bounds: h.bounds, counts: slices.Clone(h.counts)}
	for i := range out.counts {
		out.counts[i] += other.counts[i]
	}
	return out
}

// count is the number of observations.
func (h histogram) count() float64 {
	if len(h.counts) == 0 {
		return 0
	}
	return h.counts[len(h.counts)-1]
}

// quantile estimates the q-quantile in seconds as Prometheus's histogram_quantile does: linear
// within the bucket that holds it (from 0 for the first). NaN without observations; the
// highest finite bound when it falls in +Inf.
func (h histogram) quantile(q float64) float64 {
	total := h.count()
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, c := range h.counts {
		if c >= rank {
			if math.IsInf(h.bounds[i], 1) {
				return lower
			}
			if c == below {
				return h.bounds[i]
			}
			return lower + (h.bounds[i]-lower)*(rank-below)/(c-below)
		}
		lower, below = h.bounds[i], c
	}
	return lower
}
