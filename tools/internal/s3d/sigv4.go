package s3d

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// maxHashedBody bounds the body verifyV4 reads to hash when the request names no payload hash.
const maxHashedBody = 64 << 20

// verifyV4 checks r's AWS Signature Version 4 Authorization header with secret: the canonical
// request over the headers it signs and the payload hash X-Amz-Content-Sha256 names (that
// body is not hashed again, nor a streaming upload's chunk signatures checked; the request
// time is not checked against the clock). A request naming no payload hash (curl's
// --aws-sigv4 before 8.x) is signed over its body's: the body is read, hashed and put back.
func verifyV4(r *http.Request, secret string) error {
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ")
	if !ok {
		return errors.New("not an AWS4-HMAC-SHA256 Authorization header")
	}
	var scope, signed, sig string
	for f := range strings.SplitSeq(auth, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		switch k {
		case "Credential":
			_, scope, _ = strings.Cut(v, "/")
		case "SignedHeaders":
			signed = v
		case "Signature":
			sig = v
		}
	}
	parts := strings.Split(scope, "/")
	if len(parts) != 4 || parts[3] != "aws4_request" || signed == "" || sig == "" {
		return errors.New("malformed Authorization header")
	}
	date := r.Header.Get("X-Amz-Date")
	if date == "" {
		return errors.New("no X-Amz-Date header")
	}
	var canon strings.Builder
	canon.WriteString(r.Method + "\n" + cmpOr(r.URL.EscapedPath(), "/") + "\n")
	canon.WriteString(strings.ReplaceAll(r.URL.Query().Encode(), "+", "%20") + "\n")
	names := strings.Split(signed, ";")
	if !slices.IsSorted(names) {
		return errors.New("SignedHeaders not sorted")
	}
	for _, h := range names {
		canon.WriteString(h + ":" + headerValue(r, h) + "\n")
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload == "" {
		if r.ContentLength > maxHashedBody {
			return errors.New("no X-Amz-Content-Sha256 header, and a body too large to hash")
		}
		var body []byte
		if r.Body != nil { // a server's request always has one; a client's may not
			var err error
			if body, err = io.ReadAll(io.LimitReader(r.Body, maxHashedBody)); err != nil {
				return fmt.Errorf("read body: %w", err)
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		h := sha256.Sum256(body)
		payload = hex.EncodeToString(h[:])
	}
	canon.WriteString("\n" + signed + "\n" + payload)
	sum := sha256.Sum256([]byte(canon.String()))
	toSign := "AWS4-HMAC-SHA256\n" + date + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	key := []byte("AWS4" + secret)
	for _, p := range parts {
		key = hmacSHA256(key, p)
	}
	want := hex.EncodeToString(hmacSHA256(key, toSign))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return fmt.Errorf("signature does not match (scope %s, signed headers %s)", scope, signed)
	}
	return nil
}

// headerValue is header h (lower case) of r as SigV4 canonicalizes it: values trimmed,
// inner runs of spaces made one, joined by commas.
func headerValue(r *http.Request, h string) string {
	switch h {
	case "host":
		return r.Host
	case "content-length":
		if r.Header.Get("Content-Length") == "" {
			return strconv.FormatInt(r.ContentLength, 10)
		}
	}
	vs := r.Header.Values(h)
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(out, ",")
}

func hmacSHA256(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
