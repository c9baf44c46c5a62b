package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixed struct{ up, count *prometheus.Desc }

func (f fixed) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(f, ch) }
func (f fixed) Collect(ch chan<- prometheus.Metric) {
	e := Emitter(ch)
	e.Gauge(f.up, Bool(true), "a")
	e.Gauge(f.up, Bool(false), "b")
	e.Counter(f.count, 42)
}

func TestRegistryServesCollectorsAndRuntime(t *testing.T) {
	c := fixed{up: prometheus.NewDesc("t_up", "up", []string{"id"}, nil), count: prometheus.NewDesc("t_total", "count", nil, nil)}
	rec := httptest.NewRecorder()
	Routes(NewRegistry(c))["/metrics"].ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{`t_up{id="a"} 1`, `t_up{id="b"} 0`, "# TYPE t_total counter", "t_total 42", "go_goroutines ", "process_"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
