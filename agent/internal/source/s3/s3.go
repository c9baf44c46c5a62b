// Package s3 is the object-storage source driver (DESIGN.md §2: S3, MinIO, Alibaba OSS, Ceph
// RGW): a bucket and a key prefix mapped into the fs schema.
//
// Mapping: a key relative to the prefix is a path, split on "/" (prefix "data/", key
// "data/a/b.txt" → /a/b.txt); every prefix on the way is a directory (with no mtime: object
// stores have none); an object is a file with its size and LastModified as mtime. A key
// ending in "/" (a console's folder marker) is a directory only. Keys with an empty or
// invalid segment ("a//b", "a/./b", a NUL) cannot be paths: they are skipped and counted
// (skipped_invalid_name). A key that is also a prefix of other keys ("a" and "a/b") shows as
// the directory.
//
// Walks (snapshot, audit, on-demand scans) are paginated ListObjectsV2 listings: the top level
// is listed with the "/" delimiter, then every top-level prefix is listed flat (no delimiter,
// so one request per page of keys, never one per directory) by a bounded pool of workers
// (scan_workers). Realtime is an incremental listing every list_interval (watch.go): the new
// listing is compared with the last one (ETag, size, LastModified) and what was added or
// changed is sent as realtime upserts. A delete cannot be sent as realtime — nothing
// witnessed it — so deletes found by the comparison ask the pipes for an audit
// (OverflowNotifier): a full listing in which Fusion finds the missing keys and removes them
// as blind-spot deletions. Every audit covers everything (directories have no mtime, so there
// is no "true silence"); the one a listing's deletes asked for sends that listing rather than
// listing again.
//
// Throttling (503 SlowDown) and other retryable failures are retried per request by the
// client with exponential backoff (max_retries); a listing that still fails is retried by the
// watcher after a wait doubling from list_interval to backoff_max, the last listing kept, so
// the source converges when the store returns.
//
// The client is minio-go v7: it speaks S3 to every store named above, and it is far lighter
// than the AWS SDK for Go v2 (one module and a few small dependencies instead of a dozen
// service modules and smithy).
package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"go.uber.org/zap"

	"github.com/fustor/fustor/agent/internal/eventtime"
	"github.com/fustor/fustor/agent/internal/source"
)

// The source contract this driver implements.
var (
	_ source.Snapshotter      = (*Source)(nil)
	_ source.Auditor          = (*Source)(nil)
	_ source.Watcher          = (*Source)(nil)
	_ source.OverflowNotifier = (*Source)(nil)
	_ source.Counters         = (*Source)(nil)
	_ source.RealtimeReporter = (*Source)(nil)
)

// Config is one s3 source.
type Config struct {
	Endpoint  string
	Bucket    string
	Prefix    string
	Region    string
	PathStyle bool
	// AccessKey, SecretKey, SessionToken, CredentialsFile, Profile: see config.S3.
	AccessKey, SecretKey, SessionToken string
	CredentialsFile, Profile           string
	ListInterval, BackoffMax           time.Duration
	MaxRetries, PageSize, Workers      int
	// Excludes are path.Match patterns, each matched against the basename and the path
	// (without the leading "/") of an object and of every directory above it: an excluded
	// directory hides everything under it.
	Excludes []string
	// Transport, when set, carries the requests (tests); nil = the client's default.
	Transport http.RoundTripper
}

// Default returns the defaults of an s3 source without its endpoint and bucket.
func Default() Config {
	return Config{ListInterval: 30 * time.Second, BackoffMax: 5 * time.Minute, PageSize: 1000, Workers: 4}
}

// Validate reports what is missing or out of range.
func (c Config) Validate() error {
	var errs []error
	if c.Endpoint == "" || c.Bucket == "" {
		errs = append(errs, errors.New("endpoint and bucket are required"))
	}
	if c.ListInterval <= 0 || c.BackoffMax < c.ListInterval {
		errs = append(errs, errors.New("need 0 < list_interval <= backoff_max"))
	}
	if c.PageSize < 0 || c.PageSize > 1000 || c.Workers < 0 || c.MaxRetries < 0 {
		errs = append(errs, errors.New("page_size must be 0..1000, scan_workers and max_retries not negative"))
	}
	for _, p := range c.Excludes {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			errs = append(errs, fmt.Errorf("exclude pattern %q is not a valid pattern", p))
		}
	}
	return errors.Join(errs...)
}

// Source is one bucket prefix. Its walks may run concurrently with each other and with Watch.
type Source struct {
	log    *zap.Logger
	cfg    Config
	prefix string // cfg.Prefix, ending in "/" unless empty
	cl     *minio.Client
	clock  *eventtime.Clock
	c      counters

	onOverflow atomic.Pointer[func()]
	// failing is set while listings fail: realtime sees nothing then (Realtime).
	failing atomic.Bool

	// mu guards last: the listing the watcher compares the next one with (watch.go).
	mu   sync.Mutex
	last *listing
}

// New returns the source of cfg; nothing is listed until a walk or Watch.
func New(log *zap.Logger, cfg Config) (*Source, error) {
	if log == nil {
		log = zap.NewNop()
	}
	d := Default()
	if cfg.PageSize == 0 {
		cfg.PageSize = d.PageSize
	}
	if cfg.Workers == 0 {
		cfg.Workers = d.Workers
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validate s3 source: %w", err)
	}
	host, secure, err := endpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	s := &Source{log: log, cfg: cfg, clock: eventtime.New(nil)}
	if p := strings.TrimLeft(cfg.Prefix, "/"); p != "" {
		s.prefix = strings.TrimSuffix(p, "/") + "/"
	}
	rt := cfg.Transport
	if rt == nil {
		if rt, err = minio.DefaultTransport(secure); err != nil {
			return nil, fmt.Errorf("create s3 transport: %w", err)
		}
	}
	opts := &minio.Options{Creds: credentialsOf(cfg), Secure: secure, Region: cfg.Region, MaxRetries: cfg.MaxRetries,
		Transport: &counting{rt: rt, c: &s.c}}
	if cfg.PathStyle {
		opts.BucketLookup = minio.BucketLookupPath
	}
	if s.cl, err = minio.New(host, opts); err != nil {
		return nil, fmt.Errorf("create s3 client for %s: %w", cfg.Endpoint, err)
	}
	return s, nil
}

// endpoint splits "http://host:port" or "host:port" (HTTPS) into the client's host and TLS flag.
func endpoint(e string) (host string, secure bool, err error) {
	if !strings.Contains(e, "://") {
		return e, true, nil
	}
	u, err := url.Parse(e)
	if err != nil {
		return "", false, fmt.Errorf("parse s3 endpoint %q: %w", e, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", false, fmt.Errorf("s3 endpoint %q: scheme must be http or https", e)
	case u.Host == "" || (u.Path != "" && u.Path != "/"):
		return "", false, fmt.Errorf("s3 endpoint %q: want scheme://host[:port] only", e)
	}
	return u.Host, u.Scheme == "https", nil
}

// credentialsOf is the credential chain: static keys from the configuration, else the
// environment (AWS, then MinIO names), else the shared credentials file, else anonymous.
func credentialsOf(cfg Config) *credentials.Credentials {
	if cfg.AccessKey != "" {
		return credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)
	}
	ps := []credentials.Provider{&credentials.EnvAWS{}, &credentials.EnvMinio{}}
	if cfg.CredentialsFile != "" {
		ps = append(ps, &credentials.FileAWSCredentials{Filename: cfg.CredentialsFile, Profile: cfg.Profile})
	}
	return credentials.NewChainCredentials(ps)
}

// URI is how the source is named to Fusion and in logs: s3://endpoint/bucket/prefix.
func URI(endpointURL, bucket, prefix string) string {
	host, _, err := endpoint(endpointURL)
	if err != nil {
		host = endpointURL
	}
	return "s3://" + host + "/" + bucket + "/" + strings.Trim(prefix, "/")
}

// Realtime reports whether the incremental listing works: false from a failed listing until
// one succeeds again, so the pipes run degraded (can_realtime=false) through an outage.
func (s *Source) Realtime() bool { return !s.failing.Load() }

// SetOnOverflow sets what is called when a listing finds deletes: the pipes audit.
func (s *Source) SetOnOverflow(f func()) { s.onOverflow.Store(&f) }

// Snapshot lists the subtree at rel and emits it, parents before children.
func (s *Source) Snapshot(ctx context.Context, rel string, origin source.Origin, emit func([]source.Event) error) (source.WalkStats, error) {
	return s.walk(ctx, rel, origin, emit)
}

// Audit lists the whole tree, every directory in full: an object store's prefixes have no
// mtime, so nothing can be silent and cache and opts change nothing. Fusion removes what the
// audit did not report (blind-spot deletions).
//
// When the watcher's own last listing is at most one list_interval old — the audit its deletes
// asked for — the audit sends that listing instead of listing again (auditFromListing).
func (s *Source) Audit(ctx context.Context, _ *source.AuditCache, _ source.AuditOptions, emit func([]source.Event) error) (source.WalkStats, error) {
	if st, done, err := s.auditFromListing(emit); done {
		return st, err
	}
	return s.walk(ctx, "/", source.OriginAudit, emit)
}

// counters are the source's counters, by stable name (Counters).
type counters struct {
	requests, throttled, failedRequests atomic.Uint64
	objects, listings, listFailures     atomic.Uint64
	deletesFound, changesFound          atomic.Uint64
	invalidName, auditsFromListing      atomic.Uint64
	excluded                            atomic.Uint64
}

// Counters returns the source's counters; every key is always present.
func (s *Source) Counters() map[string]uint64 {
	return map[string]uint64{
		"s3_requests":            s.c.requests.Load(),
		"s3_throttled":           s.c.throttled.Load(),
		"s3_failed_requests":     s.c.failedRequests.Load(),
		"s3_objects_listed":      s.c.objects.Load(),
		"s3_listings":            s.c.listings.Load(),
		"s3_listing_failures":    s.c.listFailures.Load(),
		"s3_changes_found":       s.c.changesFound.Load(),
		"s3_deletes_found":       s.c.deletesFound.Load(),
		"s3_audits_from_listing": s.c.auditsFromListing.Load(),
		"s3_excluded":            s.c.excluded.Load(),
		"skipped_invalid_name":   s.c.invalidName.Load(),
	}
}

// counting counts the requests sent and how they ended: the cost figures of the benchmark
// and the throttling an operator wants to see.
type counting struct {
	rt http.RoundTripper
	c  *counters
}

func (t *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	t.c.requests.Add(1)
	resp, err := t.rt.RoundTrip(r)
	switch {
	case err != nil:
		t.c.failedRequests.Add(1)
	case resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests:
		t.c.throttled.Add(1)
	case resp.StatusCode >= 500:
		t.c.failedRequests.Add(1)
	}
	return resp, err
}
