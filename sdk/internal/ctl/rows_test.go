package ctl

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// testRows are the fake server's rows view: keys in order, a "state" field.
var testRows = map[string]string{"s/1": "open", "s/2": "done", "s/3": "open", "t/1": "open two"}

func (s *server) GetRow(ctx context.Context, req *fustorv1.GetRowRequest) (*fustorv1.GetRowResponse, error) {
	if err := s.record(ctx, req); err != nil {
		return nil, err
	}
	v, ok := testRows[req.GetKey()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "row not found: %q", req.GetKey())
	}
	return &fustorv1.GetRowResponse{Row: &fustorv1.Row{Key: req.GetKey(), Index: 7, Origin: fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT,
		Fields: map[string]string{"state": v, "user": "ann"}}}, nil
}

// ListRows pages as Fusion does: page_size rows a page, the token the last key.
func (s *server) ListRows(ctx context.Context, req *fustorv1.ListRowsRequest) (*fustorv1.ListRowsResponse, error) {
	if err := s.record(ctx, req); err != nil {
		return nil, err
	}
	after, _ := base64.RawURLEncoding.DecodeString(req.GetPageToken())
	keys := make([]string, 0, len(testRows))
	for k := range testRows {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := &fustorv1.ListRowsResponse{}
	for _, k := range keys {
		if k <= string(after) || !strings.HasPrefix(k, req.GetPrefix()) ||
			req.GetWhereField() == "state" && testRows[k] != req.GetWhereValue() {
			continue
		}
		if len(out.Rows) == int(max(1, req.GetPageSize())) {
			out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(out.Rows[len(out.Rows)-1].GetKey()))
			break
		}
		out.Rows = append(out.Rows, &fustorv1.Row{Key: k, Index: 3, Origin: fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME,
			Fields: map[string]string{"state": testRows[k]}})
	}
	return out, nil
}

func TestRowsCommands(t *testing.T) {
	s, addr := startServer(t, "subs=rows", "demo")
	tests := []struct {
		name       string
		args       []string
		code       int
		want       []string // substrings of stdout
		wantErr    string   // substring of stderr
		checkLast  func(t *testing.T, req any)
		notWant    string
		jsonRowsIs int // with --json: the rows expected (-1: not JSON)
	}{
		{name: "rows with prefix and where", args: []string{"rows", "subs", "--prefix", "s/", "--where", "state=open"},
			want: []string{"KEY", "s/1  3      realtime  state=open", "s/3"}, notWant: "s/2", jsonRowsIs: -1,
			checkLast: func(t *testing.T, req any) {
				r := req.(*fustorv1.ListRowsRequest)
				if r.GetView() != "subs" || r.GetPrefix() != "s/" || r.GetWhereField() != "state" || r.GetWhereValue() != "open" {
					t.Errorf("request %v", r)
				}
			}},
		{name: "rows follows pages up to the limit", args: []string{"rows", "subs", "--limit", "2", "--page-size", "1"},
			want: []string{"s/1", "s/2"}, notWant: "s/3", wantErr: "more rows than --limit 2", jsonRowsIs: -1},
		{name: "rows --all as json", args: []string{"--view", "subs", "rows", "--all", "--page-size", "1", "--json"}, jsonRowsIs: 4},
		{name: "a value with a space is quoted", args: []string{"rows", "subs", "--prefix", "t/"}, want: []string{`state="open two"`}, jsonRowsIs: -1},
		{name: "row", args: []string{"row", "subs", "s/2"}, want: []string{"key      s/2", "origin   snapshot", "state    done", "user     ann"}, jsonRowsIs: -1},
		{name: "row with --view", args: []string{"--view", "subs", "row", "s/1"}, want: []string{"state    open"}, jsonRowsIs: -1},
		{name: "row not found", args: []string{"row", "subs", "nope"}, code: 1, wantErr: "NotFound", jsonRowsIs: -1},
		{name: "row without a key", args: []string{"--view", "subs", "row"}, code: 2, wantErr: "row needs a KEY", jsonRowsIs: -1},
		{name: "bad where", args: []string{"rows", "subs", "--where", "state"}, code: 2, wantErr: "--where wants FIELD=VALUE", jsonRowsIs: -1},
		{name: "too many arguments", args: []string{"rows", "subs", "x"}, code: 2, wantErr: "unexpected arguments x", jsonRowsIs: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(addr, append([]string{"--key", "k"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tt.code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if tt.notWant != "" && strings.Contains(out, tt.notWant) {
				t.Errorf("stdout has %q:\n%s", tt.notWant, out)
			}
			if tt.wantErr != "" && !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q lacks %q", errOut, tt.wantErr)
			}
			if tt.jsonRowsIs >= 0 {
				var doc struct{ Rows []map[string]any }
				if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Rows) != tt.jsonRowsIs {
					t.Errorf("json %q: %v, want %d rows", out, err, tt.jsonRowsIs)
				}
			}
			if tt.checkLast != nil {
				tt.checkLast(t, s.last())
			}
		})
	}
}
