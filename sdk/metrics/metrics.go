// Package metrics is what Fusion's and the agent's Prometheus endpoints share: a registry of
// their own, the /metrics route, and the const metrics their collectors emit at scrape time
// (figures are read from the components when scraped, so they cost nothing in between).
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry holding the Go runtime's and the process's collectors and cs.
// It is not the global registry, so two daemons in one process (tests) do not collide.
func NewRegistry(cs ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(cs...)
	return reg
}

// Routes serves reg at /metrics, for sdk/debughttp.
func Routes(reg *prometheus.Registry) map[string]http.Handler {
	return map[string]http.Handler{"/metrics": promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}
}

// Emitter sends the metrics of one scrape.
type Emitter chan<- prometheus.Metric

// Gauge emits a gauge.
func (e Emitter) Gauge(d *prometheus.Desc, v float64, labels ...string) {
	e <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// Counter emits a counter.
func (e Emitter) Counter(d *prometheus.Desc, v float64, labels ...string) {
	e <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

// Bool is the value of a 0/1 gauge.
func Bool(x bool) float64 {
	if x {
		return 1
	}
	return 0
}
