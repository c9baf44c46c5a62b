package gateway

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// requests counts the gateway's answers by HTTP status: the calls that reached gRPC are
// counted there too (fustor_grpc_*), those the gateway refused itself (a parameter that does
// not parse, a body too large, no such route) only here.
type requests struct{ total *prometheus.CounterVec }

func newRequests(reg prometheus.Registerer) *requests {
	r := &requests{total: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fustor_gateway_requests_total",
		Help: "Requests to the JSON/HTTP gateway (/v1/), by HTTP status of the answer.",
	}, []string{"code"})}
	if reg != nil {
		reg.MustRegister(r.total)
	}
	return r
}

func (r *requests) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, req)
		r.total.WithLabelValues(strconv.Itoa(sw.code)).Inc()
	})
}

// statusWriter records the status written; it flushes, as grpc-gateway's streams need.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	w.wrote = true
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
