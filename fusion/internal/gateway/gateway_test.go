package gateway

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/fustor/fustor/gen/openapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHeaderMatcher(t *testing.T) {
	tests := []struct {
		in, out string
		ok      bool
	}{
		{"X-Api-Key", "x-api-key", true},
		{"x-api-key", "x-api-key", true},
		{"Grpc-Metadata-Trace", "trace", true},
		{"Cookie", "", false},
		{"User-Agent", "", false},
		{"Authorization", "", false}, // grpc-gateway passes it itself, as "authorization"
	}
	for _, tt := range tests {
		if out, ok := headerMatcher(tt.in); out != tt.out || ok != tt.ok {
			t.Errorf("headerMatcher(%q) = %q, %v; want %q, %v", tt.in, out, ok, tt.out, tt.ok)
		}
	}
}

func TestLoopbackTarget(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want string
		err  bool
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7070}, "127.0.0.1:7070", false},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 7070}, "127.0.0.1:7070", false},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 7070}, "[::1]:7070", false},
		{&net.TCPAddr{Port: 7070}, "127.0.0.1:7070", false},
		{&net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 9}, "10.1.2.3:9", false},
		{&net.UnixAddr{Name: "/tmp/x", Net: "unix"}, "", true},
	}
	for _, tt := range tests {
		got, err := loopbackTarget(tt.addr)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("loopbackTarget(%v) = %q, %v; want %q (error %v)", tt.addr, got, err, tt.want, tt.err)
		}
	}
}

// TestOpenAPIDocument: the embedded document is Swagger 2.0 JSON whose every operation has an
// id, a path under /v1/ and a 200 answer described by a definition of the document.
func TestOpenAPIDocument(t *testing.T) {
	var doc struct {
		Swagger string `json:"swagger"`
		Paths   map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Responses   map[string]struct {
				Schema struct {
					Ref        string `json:"$ref"`
					Properties map[string]struct {
						Ref string `json:"$ref"`
					} `json:"properties"`
				} `json:"schema"`
			} `json:"responses"`
		} `json:"paths"`
		Definitions map[string]json.RawMessage `json:"definitions"`
	}
	if err := json.Unmarshal(openapi.JSON, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Swagger != "2.0" || len(doc.Paths) == 0 {
		t.Fatalf("swagger %q with %d paths", doc.Swagger, len(doc.Paths))
	}
	for path, methods := range doc.Paths {
		for method, op := range methods {
			ok := op.Responses["200"]
			ref := ok.Schema.Ref
			if ref == "" { // a stream: {"result": <message>, "error": <status>}
				ref = ok.Schema.Properties["result"].Ref
			}
			name := strings.TrimPrefix(ref, "#/definitions/")
			if _, found := doc.Definitions[name]; !strings.HasPrefix(path, "/v1/") || op.OperationID == "" || !found {
				t.Errorf("%s %s: operation %q, answer %q (defined: %v)", method, path, op.OperationID, ref, found)
			}
		}
	}
}

func TestRoutesServeDocumentAndConsole(t *testing.T) {
	h := Routes(NewMux(nil))
	tests := []struct {
		path, contentType, body string
		code                    int
	}{
		{"/openapi.json", "application/json", `"swagger": "2.0"`, http.StatusOK},
		{"/", "text/html; charset=utf-8", "<title>Fustor", http.StatusOK},
		{"/app.js", "text/javascript; charset=utf-8", "sessionStorage", http.StatusOK},
		{"/style.css", "text/css; charset=utf-8", "", http.StatusOK},
		{"/nothing-here", "", "", http.StatusNotFound},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tt.path, nil))
		if rec.Code != tt.code || (tt.contentType != "" && rec.Header().Get("Content-Type") != tt.contentType) || !strings.Contains(rec.Body.String(), tt.body) {
			t.Errorf("GET %s: %d %q %.80q", tt.path, rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
		}
		if tt.code == http.StatusOK && tt.path != "/openapi.json" && !strings.Contains(rec.Header().Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s: no content security policy", tt.path)
		}
	}
}

// TestWaitStableGetsADeadline: a WaitStable call without Grpc-Timeout (curl) gets the default
// deadline, one with it keeps its own (grpc-gateway reads the header), other calls get none.
func TestWaitStableGetsADeadline(t *testing.T) {
	tests := []struct {
		path, timeout string
		deadline      bool
	}{
		{"/v1/views/demo/wait-stable?path=/", "", true},
		{"/v1/views/demo/wait-stable?path=/", "5S", false},
		{"/v1/views/demo/watch?path=/", "", false},
		{"/v1/views/demo/dir?path=/", "", false},
	}
	for _, tt := range tests {
		var got bool
		api := http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { _, got = r.Context().Deadline() })
		req := httptest.NewRequest("GET", tt.path, nil)
		if tt.timeout != "" {
			req.Header.Set("Grpc-Timeout", tt.timeout)
		}
		Routes(api).ServeHTTP(httptest.NewRecorder(), req)
		if got != tt.deadline {
			t.Errorf("GET %s (Grpc-Timeout %q): deadline %v; want %v", tt.path, tt.timeout, got, tt.deadline)
		}
	}
}

// TestRequestsCounted: every answer is counted by its status, and a stream can still flush
// through the counting writer.
func TestRequestsCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := newRequests(reg)
	flushed := false
	h := r.wrap(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/missing":
			w.WriteHeader(http.StatusNotFound)
		case "/stream":
			_, _ = w.Write([]byte("{}\n"))
			f, ok := w.(http.Flusher)
			if ok {
				f.Flush()
			}
			flushed = ok
		}
	}))
	for _, p := range []string{"/missing", "/stream", "/missing"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	if got := testutil.ToFloat64(r.total.WithLabelValues("404")); got != 2 {
		t.Errorf("404 answers counted %v; want 2", got)
	}
	if got := testutil.ToFloat64(r.total.WithLabelValues("200")); got != 1 || !flushed {
		t.Errorf("200 answers counted %v, flushed %v; want 1, true", got, flushed)
	}
}
