package logging

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNew(t *testing.T) {
	tests := []struct {
		level, format string
		ok            bool
	}{{"info", "console", true}, {"debug", "json", true}, {"warn", "", true}, {"loud", "json", false}, {"info", "xml", false}}
	for _, tt := range tests {
		l, err := New(tt.level, tt.format)
		if (err == nil) != tt.ok {
			t.Errorf("New(%q, %q) err = %v", tt.level, tt.format, err)
		}
		if l != nil {
			_ = l.Sync()
		}
	}
}
