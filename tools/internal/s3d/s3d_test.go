package s3d

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func storeWith(t *testing.T, keys ...string) *Store {
	t.Helper()
	s := NewStore(t0, time.Millisecond)
	if err := s.CreateBucket("b"); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if _, err := s.PutObject("b", k, nil, strings.NewReader(k), int64(len(k)), nil); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// names is a page as one list: common prefixes end in "/", and a "…" closes a truncated page.
func names(l *gofakes3.ObjectList) []string {
	var out []string
	for _, p := range l.CommonPrefixes {
		out = append(out, p.Prefix)
	}
	for _, c := range l.Contents {
		out = append(out, c.Key)
	}
	slices.Sort(out)
	if l.IsTruncated {
		out = append(out, "…")
	}
	return out
}

var keys = []string{"a", "a/b/1", "a/b/2", "a/c", "a/d/e/3", "ab", "b/1", "b/2", "c"}

// TestListBucket: a page holds what S3 would list — prefix, delimiter, marker, max-keys — and
// is truncated only when a key under the prefix follows it.
func TestListBucket(t *testing.T) {
	s := storeWith(t, keys...)
	pre := func(p, d string) *gofakes3.Prefix {
		return &gofakes3.Prefix{HasPrefix: p != "", Prefix: p, HasDelimiter: d != "", Delimiter: d}
	}
	tests := []struct {
		name   string
		prefix *gofakes3.Prefix
		page   gofakes3.ListBucketPage
		want   []string
	}{
		{"all", nil, gofakes3.ListBucketPage{}, keys},
		{"top level", pre("", "/"), gofakes3.ListBucketPage{}, []string{"a", "a/", "ab", "b/", "c"}},
		{"prefix", pre("a/", ""), gofakes3.ListBucketPage{}, []string{"a/b/1", "a/b/2", "a/c", "a/d/e/3"}},
		{"prefix, delimiter", pre("a/", "/"), gofakes3.ListBucketPage{}, []string{"a/b/", "a/c", "a/d/"}},
		{"prefix not at a slash", pre("a", "/"), gofakes3.ListBucketPage{}, []string{"a", "a/", "ab"}},
		{"last full page not truncated", pre("b/", ""), gofakes3.ListBucketPage{MaxKeys: 2}, []string{"b/1", "b/2"}},
		{"truncated", pre("a/", ""), gofakes3.ListBucketPage{MaxKeys: 2}, []string{"a/b/1", "a/b/2", "…"}},
		{"marker", pre("a/", ""), gofakes3.ListBucketPage{Marker: "a/b/2", HasMarker: true}, []string{"a/c", "a/d/e/3"}},
		{"marker before the prefix", pre("b/", ""), gofakes3.ListBucketPage{Marker: "a", HasMarker: true}, []string{"b/1", "b/2"}},
		{"marker a common prefix", pre("", "/"), gofakes3.ListBucketPage{Marker: "a/", HasMarker: true}, []string{"ab", "b/", "c"}},
		{"common prefixes count", pre("", "/"), gofakes3.ListBucketPage{MaxKeys: 2}, []string{"a", "a/", "…"}},
		{"nothing under the prefix", pre("zz", ""), gofakes3.ListBucketPage{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := s.ListBucket("b", tt.prefix, tt.page)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(l); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := s.ListBucket("nope", nil, gofakes3.ListBucketPage{}); !gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchBucket) {
		t.Errorf("missing bucket: %v", err)
	}
}

// TestListPaged: paging with NextMarker, any page size, lists what one page does, every key once.
func TestListPaged(t *testing.T) {
	s := storeWith(t, keys...)
	for _, p := range []gofakes3.Prefix{{}, {HasDelimiter: true, Delimiter: "/"}, {HasPrefix: true, Prefix: "a/"},
		{HasPrefix: true, Prefix: "a/", HasDelimiter: true, Delimiter: "/"}} {
		whole, err := s.ListBucket("b", &p, gofakes3.ListBucketPage{})
		if err != nil {
			t.Fatal(err)
		}
		for size := int64(1); size <= 4; size++ {
			var got []string
			page := gofakes3.ListBucketPage{MaxKeys: size}
			for range 20 {
				l, err := s.ListBucket("b", &p, page)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, names(l)...)
				if !l.IsTruncated {
					break
				}
				got = got[:len(got)-1]
				page.Marker, page.HasMarker = l.NextMarker, true
			}
			slices.Sort(got)
			if want := names(whole); !slices.Equal(got, want) {
				t.Errorf("%v in pages of %d: %q, want %q", p, size, got, want)
			}
		}
	}
}

// TestPutDelete: overwrites keep one key with a new LastModified; deletes remove it; seeded
// objects are listed in order with their sizes.
func TestPutDelete(t *testing.T) {
	s := storeWith(t, "x", "y")
	if _, err := s.PutObject("b", "x", nil, strings.NewReader("longer"), 6, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteObject("b", "y"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteObject("b", "never"); err != nil {
		t.Errorf("deleting a missing key: %v", err)
	}
	l, _ := s.ListBucket("b", nil, gofakes3.ListBucketPage{})
	if len(l.Contents) != 1 || l.Contents[0].Size != 6 || !time.Time(l.Contents[0].LastModified.Time).Equal(t0.Add(2*time.Millisecond)) {
		t.Fatalf("after overwrite and delete: %+v", l.Contents)
	}
	o, err := s.GetObject("b", "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(o.Contents)
	if string(body) != "longer" {
		t.Errorf("body %q", body)
	}
	if err := s.Seed("b", 1200); err != nil {
		t.Fatal(err)
	}
	l, _ = s.ListBucket("b", &gofakes3.Prefix{HasPrefix: true, Prefix: "t3/m0/l2/"}, gofakes3.ListBucketPage{})
	if len(l.Contents) != 1 || l.Contents[0].Key != "t3/m0/l2/obj-000203.dat" || l.Contents[0].Size != 203 {
		t.Errorf("seeded t3/m0/l2/: %d objects, want obj-000203.dat of 203 bytes", len(l.Contents))
	}
	if l, _ = s.ListBucket("b", nil, gofakes3.ListBucketPage{}); len(l.Contents) != 1201 {
		t.Errorf("%d objects after seeding 1200", len(l.Contents))
	}
}

// logBuf is a log a test waits on.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// wait returns the first log line holding s, polling until a deadline.
func (l *logBuf) wait(t *testing.T, s string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		l.mu.Lock()
		for line := range strings.Lines(l.b.String()) {
			if strings.Contains(line, s) {
				l.mu.Unlock()
				return strings.TrimSpace(line)
			}
		}
		l.mu.Unlock()
	}
	t.Fatalf("no log line %q", s)
	return ""
}

// field is the value of key= in a log line.
func field(line, key string) string {
	for f := range strings.FieldsSeq(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

func run(t *testing.T, cfg Config) (*logBuf, chan os.Signal, string) {
	t.Helper()
	log := &logBuf{}
	ctl := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(log, cfg).Run(ctx, ctl) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return log, ctl, log.wait(t, "listening addr=")
}

type listResult struct {
	Keys []string `xml:"Contents>Key"`
}

func list(addr, key string) ([]string, int, error) {
	req, _ := http.NewRequest("GET", "http://"+addr+"/data?list-type=2", nil)
	if key != "" {
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+key+"/20260102/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var l listResult
	if resp.StatusCode == http.StatusOK {
		if err := xml.NewDecoder(resp.Body).Decode(&l); err != nil {
			return nil, 0, err
		}
	}
	return l.Keys, resp.StatusCode, nil
}

// TestOutage: SIGUSR1 leaves the address (connections refused), SIGUSR2 takes it back with the
// data kept; the admin endpoint stays up and sees the same data.
func TestOutage(t *testing.T) {
	cfg := Default()
	cfg.Listen, cfg.AdminListen, cfg.Seed = "127.0.0.1:0", "127.0.0.1:0", 50
	log, ctl, line := run(t, cfg)
	addr, admin := field(line, "addr"), field(line, "admin_addr")
	if ks, _, err := list(addr, ""); err != nil || len(ks) != 50 {
		t.Fatalf("seeded listing: %d keys, %v", len(ks), err)
	}
	ctl <- syscall.SIGUSR1
	log.wait(t, "down addr="+addr)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("connected while down")
	}
	req, _ := http.NewRequest("PUT", "http://"+admin+"/data/during/outage.dat", strings.NewReader("x"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("put through the admin endpoint: %v %v", resp, err)
	}
	resp.Body.Close()
	ctl <- syscall.SIGUSR2
	log.wait(t, "up addr="+addr)
	ks, _, err := list(addr, "")
	if err != nil || len(ks) != 51 || !slices.Contains(ks, "during/outage.dat") {
		t.Fatalf("after the outage: %d keys, %v", len(ks), err)
	}
}

// TestAccessKey: with an access key set, a request naming another key or none is refused.
func TestAccessKey(t *testing.T) {
	cfg := Default()
	cfg.Listen, cfg.AdminListen, cfg.AccessKey = "127.0.0.1:0", "127.0.0.1:0", "ak"
	_, _, line := run(t, cfg)
	addr := field(line, "addr")
	for _, tt := range []struct {
		key  string
		want int
	}{{"", http.StatusForbidden}, {"other", http.StatusForbidden}, {"ak", http.StatusOK}} {
		if _, code, err := list(addr, tt.key); err != nil || code != tt.want {
			t.Errorf("access key %q: status %d (%v), want %d", tt.key, code, err, tt.want)
		}
	}
	if _, code, err := list(field(line, "admin_addr"), ""); err != nil || code != http.StatusOK {
		t.Errorf("admin endpoint without a key: status %d (%v), want 200", code, err)
	}
}

// TestVerifyV4: AWS's Signature V4 test suite requests (get-vanilla, get-vanilla-query-order-key-case)
// verify with their secret and fail with another, or with a header or the query changed.
func TestVerifyV4(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	req := func(target, sig string, edit func(*http.Request)) *http.Request {
		r, err := http.NewRequest("GET", "http://example.amazonaws.com"+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("X-Amz-Date", "20150830T123600Z")
		r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature="+sig)
		if edit != nil {
			edit(r)
		}
		return r
	}
	const vanilla = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
	const query = "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
	for _, tt := range []struct {
		name   string
		r      *http.Request
		secret string
		ok     bool
	}{
		{"get-vanilla", req("/", vanilla, nil), secret, true},
		{"get-vanilla-query-order-key-case", req("/?Param2=value2&Param1=value1", query, nil), secret, true},
		{"another secret", req("/", vanilla, nil), "other", false},
		{"date changed", req("/", vanilla, func(r *http.Request) { r.Header.Set("X-Amz-Date", "20150830T123601Z") }), secret, false},
		{"query changed", req("/?Param2=value3&Param1=value1", query, nil), secret, false},
		{"no date", req("/", vanilla, func(r *http.Request) { r.Header.Del("X-Amz-Date") }), secret, false},
		{"not v4", req("/", vanilla, func(r *http.Request) { r.Header.Set("Authorization", "AWS AKIDEXAMPLE:x") }), secret, false},
		{"malformed", req("/", vanilla, func(r *http.Request) {
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830")
		}), secret, false},
	} {
		if err := verifyV4(tt.r, tt.secret); (err == nil) != tt.ok {
			t.Errorf("%s: %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"default", func(*Config) {}, true},
		{"no listen", func(c *Config) { c.Listen = "" }, false},
		{"no bucket", func(c *Config) { c.Bucket = "" }, false},
		{"negative seed", func(c *Config) { c.Seed = -1 }, false},
		{"secret alone", func(c *Config) { c.SecretKey = "s" }, false},
	} {
		c := Default()
		tt.edit(&c)
		if err := c.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// TestWallClock: after WallClock, puts are dated by the wall clock, each after the last.
func TestWallClock(t *testing.T) {
	s := storeWith(t, "seeded")
	s.WallClock()
	before := time.Now().UTC().Truncate(time.Millisecond)
	for _, k := range []string{"a", "b", "c"} {
		if _, err := s.PutObject("b", k, nil, strings.NewReader(k), 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	l, _ := s.ListBucket("b", nil, gofakes3.ListBucketPage{})
	var last time.Time
	for _, c := range l.Contents {
		mt := c.LastModified.Time
		switch {
		case c.Key == "seeded" && !mt.Equal(t0):
			t.Errorf("seeded: %v, want %v", mt, t0)
		case c.Key != "seeded" && (mt.Before(before) || !mt.After(last)):
			t.Errorf("%s: %v, want after %v and %v", c.Key, mt, before, last)
		}
		last = mt
	}
}
