package app

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/tlsfiles/tlstest"
)

// withGateway turns the HTTP gateway on, on a free port, with a second view "other" whose
// query key is "other-key" (demo-key may not query it).
func withGateway(c *config.Config) {
	c.Server.HTTPListen = "127.0.0.1:0"
	c.Views["other"] = config.View{Driver: config.DriverFS, Schema: "fs", Live: true, QueryKeys: []string{"other-key"}}
	c.Pipes["demo"] = config.Pipe{Receiver: "default", Views: []string{"demo", "other"}}
	c.Normalize()
}

// httpCall sends one request to the gateway with key as a bearer token ("" = none).
func httpCall(t *testing.T, h *harness, method, path, key, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+h.f.HTTPAddr().String()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(path, "/wait-stable") {
		req.Header.Set("Grpc-Timeout", "300m") // as the gRPC call's deadline
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// scrub clears the fields of m, at any depth, that differ between two identical calls (how
// long a call took, how long until a suspect's next check, the watermark: the view's clock,
// which follows the physical one).
func scrub(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Name() == "took" || fd.Name() == "expires_in_ms" || fd.Name() == "duration_ms" || fd.Name() == "encode_ms" || fd.Name() == "last_heartbeat" || fd.Name() == "watermark":
			m.Clear(fd)
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				scrub(v.List().Get(i).Message())
			}
		case fd.Message() != nil && !fd.IsMap():
			scrub(v.Message())
		}
		return true
	})
}

// TestGatewayAnswersAsGRPC: every ViewService and AdminService call through HTTP (JSON, the
// same key as a header) answers what the same call through gRPC answers: the same message, or
// the same status code and message.
func TestGatewayAnswersAsGRPC(t *testing.T) {
	h := start(t, func(c *config.Config) { withRows(c); withGateway(c) })
	a := h.connect(t)
	a.snapshot(t, map[string]uint64{"/up/a/f1.dat": 1, "/up/a/f2.dat": 2, "/up/b/g.txt": 3, "/docs/readme": 4})
	h.rowsAgent(t).rowSnapshot(t, grow("s/1", 1, "state", "open"), grow("s/2", 1, "state", "done"), grow("x y", 1))
	q, adm, ctx := h.views(), fustorv1.NewAdminServiceClient(h.conn), withKey("demo-key")
	tests := []struct {
		name, method, path, body string
		grpc                     func() (proto.Message, error)
		resp                     proto.Message
	}{
		{"ListViews", "GET", "/v1/views", "", func() (proto.Message, error) { return q.ListViews(ctx, &fustorv1.ListViewsRequest{}) }, &fustorv1.ListViewsResponse{}},
		{"ListDirectory", "GET", "/v1/views/demo/dir?path=/up&max_depth=2&page_size=2", "", func() (proto.Message, error) {
			return q.ListDirectory(ctx, &fustorv1.ListDirectoryRequest{View: "demo", Path: "/up", MaxDepth: 2, PageSize: 2})
		}, &fustorv1.ListDirectoryResponse{}},
		{"Stat", "GET", "/v1/views/demo/stat?path=/up/a/f1.dat", "", func() (proto.Message, error) {
			return q.Stat(ctx, &fustorv1.StatRequest{View: "demo", Path: "/up/a/f1.dat"})
		}, &fustorv1.StatResponse{}},
		{"Stat missing", "GET", "/v1/views/demo/stat?path=/nope", "", func() (proto.Message, error) {
			return q.Stat(ctx, &fustorv1.StatRequest{View: "demo", Path: "/nope"})
		}, &fustorv1.StatResponse{}},
		{"Find glob", "GET", "/v1/views/demo/find?path=/&glob=*.dat&files_only=true", "", func() (proto.Message, error) {
			return q.Find(ctx, &fustorv1.FindRequest{View: "demo", Path: "/", Glob: "*.dat", FilesOnly: true})
		}, &fustorv1.FindResponse{}},
		{"Find bad glob", "GET", "/v1/views/demo/find?path=/&glob=" + url.QueryEscape("[a-"), "", func() (proto.Message, error) {
			return q.Find(ctx, &fustorv1.FindRequest{View: "demo", Path: "/", Glob: "[a-"})
		}, &fustorv1.FindResponse{}},
		{"GetStats", "GET", "/v1/views/demo/stats?path=/up", "", func() (proto.Message, error) {
			return q.GetStats(ctx, &fustorv1.GetStatsRequest{View: "demo", Path: "/up"})
		}, &fustorv1.GetStatsResponse{}},
		{"ListSuspects", "GET", "/v1/views/demo/suspects?path=/", "", func() (proto.Message, error) {
			return q.ListSuspects(ctx, &fustorv1.ListSuspectsRequest{View: "demo", Path: "/"})
		}, &fustorv1.ListSuspectsResponse{}},
		{"ListBlindSpots", "GET", "/v1/views/demo/blind-spots?path=/", "", func() (proto.Message, error) {
			return q.ListBlindSpots(ctx, &fustorv1.ListBlindSpotsRequest{View: "demo", Path: "/"})
		}, &fustorv1.ListBlindSpotsResponse{}},
		{"ListChanges", "GET", "/v1/views/demo/changes?path=/", "", func() (proto.Message, error) {
			return q.ListChanges(ctx, &fustorv1.ListChangesRequest{View: "demo", Path: "/"})
		}, &fustorv1.ListChangesResponse{}},
		{"WaitStable", "GET", "/v1/views/demo/wait-stable?path=/up&quiet=0.001s&min_files=100", "", func() (proto.Message, error) {
			// A deadline from the client: both ways it ends "not stable" a little before it.
			c, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			return q.WaitStable(c, &fustorv1.WaitStableRequest{View: "demo", Path: "/up", Quiet: durationOf(time.Millisecond), MinFiles: 100})
		}, &fustorv1.WaitStableResponse{}},
		// The in-test agent never answers the walk command: both ways the walk times out.
		{"Verify", "POST", "/v1/views/demo/verify", `{"path": "/up", "timeout": "0.2s"}`, func() (proto.Message, error) {
			return q.Verify(ctx, &fustorv1.VerifyRequest{View: "demo", Path: "/up", Timeout: durationOf(200 * time.Millisecond)})
		}, &fustorv1.VerifyResponse{}},
		{"GetRow", "GET", "/v1/views/subs/row?key=" + url.QueryEscape("x y"), "", func() (proto.Message, error) {
			return q.GetRow(ctx, &fustorv1.GetRowRequest{View: "subs", Key: "x y"})
		}, &fustorv1.GetRowResponse{}},
		{"GetRow missing", "GET", "/v1/views/subs/row?key=nope", "", func() (proto.Message, error) {
			return q.GetRow(ctx, &fustorv1.GetRowRequest{View: "subs", Key: "nope"})
		}, &fustorv1.GetRowResponse{}},
		{"ListRows", "GET", "/v1/views/subs/rows?prefix=s/&where_field=state&where_value=open&page_size=5", "", func() (proto.Message, error) {
			return q.ListRows(ctx, &fustorv1.ListRowsRequest{View: "subs", Prefix: "s/", WhereField: "state", WhereValue: "open", PageSize: 5})
		}, &fustorv1.ListRowsResponse{}},
		{"ListRows on an fs view", "GET", "/v1/views/demo/rows", "", func() (proto.Message, error) {
			return q.ListRows(ctx, &fustorv1.ListRowsRequest{View: "demo"})
		}, &fustorv1.ListRowsResponse{}},
		{"admin ListPipes", "GET", "/v1/admin/pipes", "", func() (proto.Message, error) { return adm.ListPipes(ctx, &fustorv1.ListPipesRequest{}) }, &fustorv1.ListPipesResponse{}},
		{"admin ListSessions", "GET", "/v1/admin/sessions?view=demo", "", func() (proto.Message, error) {
			return adm.ListSessions(ctx, &fustorv1.ListSessionsRequest{View: "demo"})
		}, &fustorv1.ListSessionsResponse{}},
		{"admin ListViews", "GET", "/v1/admin/views", "", func() (proto.Message, error) {
			return adm.ListViews(ctx, &fustorv1.AdminServiceListViewsRequest{})
		}, &fustorv1.AdminServiceListViewsResponse{}},
		{"admin Reload", "POST", "/v1/admin/reload", `{}`, func() (proto.Message, error) { return adm.Reload(ctx, &fustorv1.ReloadRequest{}) }, &fustorv1.ReloadResponse{}},
		{"admin Checkpoint", "POST", "/v1/admin/checkpoint", `{"view": "demo"}`, func() (proto.Message, error) {
			return adm.Checkpoint(ctx, &fustorv1.CheckpointRequest{View: "demo"})
		}, &fustorv1.CheckpointResponse{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, gerr := tt.grpc()
			code, body := httpCall(t, h, tt.method, tt.path, "demo-key", tt.body)
			if gerr != nil {
				st := status.Convert(gerr)
				var got struct {
					Code    codes.Code `json:"code"`
					Message string     `json:"message"`
				}
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatalf("HTTP %d %s: not a status: %v", code, body, err)
				}
				if got.Code != st.Code() || got.Message != st.Message() || code < 400 {
					t.Fatalf("HTTP %d %+v; gRPC said %v", code, got, gerr)
				}
				return
			}
			if code != http.StatusOK {
				t.Fatalf("HTTP %d %s; gRPC answered %v", code, body, want)
			}
			if err := protojson.Unmarshal(body, tt.resp); err != nil {
				t.Fatalf("decode %s: %v", body, err)
			}
			scrub(want.ProtoReflect())
			scrub(tt.resp.ProtoReflect())
			if !proto.Equal(want, tt.resp) {
				t.Fatalf("HTTP answered\n%v\ngRPC answered\n%v", tt.resp, want)
			}
		})
	}
	t.Run("GetTree", func(t *testing.T) {
		s, err := q.GetTree(ctx, &fustorv1.GetTreeRequest{View: "demo", Path: "/"})
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for {
			m, err := s.Recv()
			if err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			scrub(m.ProtoReflect())
			want = append(want, protojson.Format(m))
		}
		code, body := httpCall(t, h, "GET", "/v1/views/demo/tree?path=/", "demo-key", "")
		if code != http.StatusOK {
			t.Fatalf("HTTP %d %s", code, body)
		}
		var got []string
		for line := range strings.Lines(string(body)) {
			m := &fustorv1.GetTreeResponse{}
			decodeResult(t, line, m)
			scrub(m.ProtoReflect())
			got = append(got, protojson.Format(m))
		}
		if len(want) == 0 || strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("HTTP streamed\n%v\ngRPC streamed\n%v", got, want)
		}
	})
	t.Run("Watch", func(t *testing.T) {
		wctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(wctx, "GET", "http://"+h.f.HTTPAddr().String()+"/v1/views/demo/watch?path=/up", nil)
		req.Header.Set("X-Api-Key", "demo-key")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("HTTP %d", resp.StatusCode)
		}
		lines := bufio.NewScanner(resp.Body)
		lines.Buffer(nil, 1<<20)
		next := func() *fustorv1.WatchResponse {
			t.Helper()
			if !lines.Scan() {
				t.Fatalf("the stream ended: %v", lines.Err())
			}
			m := &fustorv1.WatchResponse{}
			decodeResult(t, lines.Text(), m)
			return m
		}
		first := next()
		if first.GetMeta().GetView() != "demo" || first.GetCursor() == "" {
			t.Fatalf("first message %v", first)
		}
		a.realtime(t, map[string]uint64{"/up/new.dat": 5}, time.Now().Add(-time.Hour))
		var seen []string
		for len(seen) == 0 {
			for _, c := range next().GetChanges() {
				seen = append(seen, fmt.Sprintf("%s:%s", c.GetKind(), c.GetPath()))
			}
		}
		// The same changes as the feed holds after the first cursor.
		page, err := q.ListChanges(ctx, &fustorv1.ListChangesRequest{View: "demo", Path: "/up", Since: first.GetCursor()})
		if err != nil {
			t.Fatal(err)
		}
		var feed []string
		for _, c := range page.GetChanges() {
			feed = append(feed, fmt.Sprintf("%s:%s", c.GetKind(), c.GetPath()))
		}
		if fmt.Sprint(seen) != "[CHANGE_KIND_CREATED:/up/new.dat]" || fmt.Sprint(seen) != fmt.Sprint(feed) {
			t.Fatalf("watched %v; the feed holds %v", seen, feed)
		}
	})
}

// decodeResult decodes one line of a streamed answer, {"result": ...}, into m.
func decodeResult(t *testing.T, line string, m proto.Message) {
	t.Helper()
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal([]byte(line), &env); err != nil || env.Error != nil {
		t.Fatalf("stream line %q: %v", line, err)
	}
	if err := protojson.Unmarshal(env.Result, m); err != nil {
		t.Fatalf("decode %s: %v", env.Result, err)
	}
}

// TestGatewayAuthStatuses: the gateway answers auth failures with grpc-gateway's HTTP
// statuses, and the same status body as gRPC's.
func TestGatewayAuthStatuses(t *testing.T) {
	h := start(t, withGateway)
	a := h.connect(t)
	a.snapshot(t, map[string]uint64{"/f": 1})
	tests := []struct {
		name, path, key string
		want            int
		code            codes.Code
	}{
		{"no key", "/v1/views", "", http.StatusUnauthorized, codes.Unauthenticated},
		{"wrong key", "/v1/views/demo/stats?path=/", "nope", http.StatusUnauthorized, codes.Unauthenticated},
		{"ingest key", "/v1/views/demo/stats?path=/", "demo-ingest-key", http.StatusUnauthorized, codes.Unauthenticated},
		{"query key on admin", "/v1/admin/sessions", "other-key", http.StatusUnauthorized, codes.Unauthenticated},
		{"another view's key", "/v1/views/other/stats?path=/", "demo-key", http.StatusForbidden, codes.PermissionDenied},
		{"unknown view", "/v1/views/nope/stats?path=/", "demo-key", http.StatusNotFound, codes.NotFound},
		{"missing path", "/v1/views/demo/stat?path=/zz", "demo-key", http.StatusNotFound, codes.NotFound},
		{"bad path", "/v1/views/demo/stat?path=a/../b", "demo-key", http.StatusBadRequest, codes.InvalidArgument},
		{"bad parameter", "/v1/views/demo/dir?path=/&max_depth=deep", "demo-key", http.StatusBadRequest, codes.InvalidArgument},
		{"bad enum", "/v1/views/demo/stats?path=/&best_by=BIGGEST", "demo-key", http.StatusBadRequest, codes.InvalidArgument},
		{"no such route", "/v1/nothing", "demo-key", http.StatusNotFound, codes.NotFound},
		{"right key", "/v1/views/demo/stats?path=/", "demo-key", http.StatusOK, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := httpCall(t, h, "GET", tt.path, tt.key, "")
			var st struct {
				Code    codes.Code `json:"code"`
				Message string     `json:"message"`
			}
			if err := json.Unmarshal(body, &st); err != nil {
				t.Fatalf("HTTP %d %s: %v", code, body, err)
			}
			if code != tt.want || st.Code != tt.code {
				t.Fatalf("HTTP %d %s; want %d, %v", code, body, tt.want, tt.code)
			}
			if tt.code != codes.OK && st.Message == "" {
				t.Fatalf("HTTP %d with no message", code)
			}
		})
	}
	// A body beyond the gateway's bound is refused before it reaches Fusion.
	if code, body := httpCall(t, h, "POST", "/v1/admin/checkpoint", "demo-key", `{"view": "`+strings.Repeat("x", 2<<20)+`"}`); code != http.StatusBadRequest {
		t.Fatalf("a 2 MiB body: HTTP %d %.200s", code, body)
	}
	// x-api-key is the other header gRPC accepts.
	req, _ := http.NewRequest("GET", "http://"+h.f.HTTPAddr().String()+"/v1/views", nil)
	req.Header.Set("X-Api-Key", "demo-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("x-api-key: HTTP %d", resp.StatusCode)
	}
}

// TestGatewayServesOpenAPIAndConsole: /openapi.json names every ViewService and AdminService
// RPC (gateway's own tests check the document's shape), and / is the console.
func TestGatewayServesOpenAPIAndConsole(t *testing.T) {
	h := start(t, withGateway)
	code, body := httpCall(t, h, "GET", "/openapi.json", "", "")
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || code != http.StatusOK {
		t.Fatalf("HTTP %d: %v", code, err)
	}
	ops := map[string]bool{}
	for _, methods := range doc.Paths {
		for _, op := range methods {
			ops[op.OperationID] = true
		}
	}
	for _, svc := range []protoreflect.ServiceDescriptor{
		fustorv1.File_fustor_v1_view_proto.Services().ByName("ViewService"),
		fustorv1.File_fustor_v1_admin_proto.Services().ByName("AdminService"),
	} {
		for i := range svc.Methods().Len() {
			if id := string(svc.Name()) + "_" + string(svc.Methods().Get(i).Name()); !ops[id] {
				t.Errorf("/openapi.json lacks %s", id)
			}
		}
	}
	code, body = httpCall(t, h, "GET", "/", "", "")
	if code != http.StatusOK || !strings.Contains(string(body), "<title>Fustor") {
		t.Fatalf("console: HTTP %d %.200s", code, body)
	}
}

// TestGatewayOverTLSListener: with server.tls on, the gateway calls the gRPC listener over
// TLS and serves HTTPS with the same certificate (plain HTTP with server.http_plaintext);
// with client certificates required it cannot call, and Fusion refuses to start, saying why.
func TestGatewayOverTLSListener(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "gateway test ca")
	cert, key := ca.Server(t, "127.0.0.1", "localhost").Write(t, dir, "server")
	caFile := ca.WriteCA(t, dir, "ca")
	tests := []struct {
		name, clientAuth, refused string
		plaintext                 bool
	}{
		{"plain TLS", config.ClientAuthNone, "", false},
		{"client certificates verified if given", config.ClientAuthVerifyIfGiven, "", false},
		{"plain HTTP behind a proxy", config.ClientAuthNone, "", true},
		{"client certificates required", config.ClientAuthRequire, "server.tls.client_auth \"require\"", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Demo()
			cfg.Server.Listen, cfg.Server.StateDir, cfg.Server.ShutdownTimeout = "127.0.0.1:0", t.TempDir(), time.Second
			withGateway(&cfg)
			cfg.Server.TLS = config.TLS{CertFile: cert, KeyFile: key, ClientAuth: tt.clientAuth}
			cfg.Server.HTTPPlaintext = tt.plaintext
			if tt.clientAuth != config.ClientAuthNone {
				cfg.Server.TLS.ClientCAFile = caFile
			}
			f, err := New(nil, cfg, Options{})
			if tt.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("New = %v; want a refusal naming %s", err, tt.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- f.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			}()
			if tt.plaintext {
				code, body := httpCall(t, &harness{f: f}, "GET", "/v1/views", "demo-key", "")
				if code != http.StatusOK || !strings.Contains(string(body), `"id":"demo"`) {
					t.Fatalf("HTTP %d %s", code, body)
				}
				return
			}
			// HTTPS with the listener's certificate, verified against the CA; plain HTTP is
			// answered with a 400 by the TLS listener, never served.
			pool := x509.NewCertPool()
			pem, err := os.ReadFile(caFile)
			if err != nil || !pool.AppendCertsFromPEM(pem) {
				t.Fatalf("read the CA: %v", err)
			}
			cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
			defer cl.CloseIdleConnections()
			req, _ := http.NewRequest("GET", "https://"+f.HTTPAddr().String()+"/v1/views", nil)
			req.Header.Set("Authorization", "Bearer demo-key")
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatalf("https: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"id":"demo"`) {
				t.Fatalf("HTTPS %d %s", resp.StatusCode, body)
			}
			plain, err := http.Get("http://" + f.HTTPAddr().String() + "/v1/views")
			if err == nil {
				b, _ := io.ReadAll(plain.Body)
				plain.Body.Close()
				if strings.Contains(string(b), `"id":"demo"`) {
					t.Fatalf("plain HTTP was served on the HTTPS listener: %s", b)
				}
			}
		})
	}
}
