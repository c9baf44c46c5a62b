package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
)

// Report is everything a run measured; report.json is this struct.
type Report struct {
	Title   string   `json:"title"`
	Date    string   `json:"date"`
	Command string   `json:"command"`
	Machine Machine  `json:"machine"`
	Tree    TreeInfo `json:"tree"`
	// Figures are the measured figures, in the order they are printed.
	Figures []Figure `json:"figures"`
	// Latency holds the latency distributions plotted in report.html.
	Latency []Series `json:"latency"`
	// Notes say how figures were measured.
	Notes []string `json:"notes"`
	// Errors are phases that failed; their figures are missing.
	Errors []string `json:"errors,omitempty"`
}

// TreeInfo describes the measured tree.
type TreeInfo struct {
	Root          string  `json:"root"`
	Files         int     `json:"files"`
	Dirs          int     `json:"dirs"`
	Layout        string  `json:"layout"`
	Reused        bool    `json:"reused"`
	GenerateSecs  float64 `json:"generate_seconds,omitempty"`
	FindCountSecs float64 `json:"find_count_seconds,omitempty"`
}

// Figure is one line of the report: a value, its unit and, when the issue sets one, a target.
type Figure struct {
	// ID groups figures by the numbering (P1..P6, A for the agent walk and audit, V for verify).
	ID     string  `json:"id"`
	Key    string  `json:"key"`
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Target *Target `json:"target,omitempty"`
	// Pass is set when there is a target.
	Pass *bool `json:"pass,omitempty"`
	// Detail is a short qualifier printed after the name (what exactly was measured).
	Detail string `json:"detail,omitempty"`
}

// Target is a bound on a figure: value Op Limit must hold.
type Target struct {
	Op    string  `json:"op"` // "<=", "<" or ">="
	Limit float64 `json:"limit"`
}

// Series is one latency distribution, with the time of the equivalent find when there is one.
type Series struct {
	Name   string    `json:"name"`
	Lat    Latencies `json:"latency"`
	FindMs float64   `json:"find_ms,omitempty"`
	Target float64   `json:"target_p99_ms,omitempty"`
	// ServerCPUus and ClientCPUus are the CPU time per query of Fusion and of the bench.
	ServerCPUus float64 `json:"server_cpu_us_per_query,omitempty"`
	ClientCPUus float64 `json:"client_cpu_us_per_query,omitempty"`
}

// Add appends a figure, judging it against t when t is non-nil.
func (r *Report) Add(id, key, name string, value float64, unit string, t *Target, detail string) {
	f := Figure{ID: id, Key: key, Name: name, Value: value, Unit: unit, Target: t, Detail: detail}
	if t != nil {
		ok := t.holds(value)
		f.Pass = &ok
	}
	r.Figures = append(r.Figures, f)
}

// Figure returns the figure with key, if any.
func (r *Report) Figure(key string) (Figure, bool) {
	for _, f := range r.Figures {
		if f.Key == key {
			return f, true
		}
	}
	return Figure{}, false
}

// AtMost, Below and AtLeast build targets.
func AtMost(v float64) *Target  { return &Target{Op: "<=", Limit: v} }
func Below(v float64) *Target   { return &Target{Op: "<", Limit: v} }
func AtLeast(v float64) *Target { return &Target{Op: ">=", Limit: v} }

func (t *Target) holds(v float64) bool {
	if math.IsNaN(v) {
		return false
	}
	switch t.Op {
	case "<=":
		return v <= t.Limit
	case "<":
		return v < t.Limit
	case ">=":
		return v >= t.Limit
	}
	return false
}

// FormatValue renders a value in its unit for people: thousands separators, sensible
// precision.
func FormatValue(v float64, unit string) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	var num string
	switch {
	case unit == "x":
		return trimFloat(v, 2) + "×"
	case unit == "%":
		return trimFloat(v, 1) + " %"
	case math.Abs(v) >= 1000:
		num = commas(int64(math.Round(v)))
	case math.Abs(v) >= 100:
		num = trimFloat(v, 0)
	case math.Abs(v) >= 10:
		num = trimFloat(v, 1)
	case math.Abs(v) >= 0.1:
		num = trimFloat(v, 2)
	default:
		num = trimFloat(v, 3)
	}
	if unit == "" {
		return num
	}
	return num + " " + unit
}

func trimFloat(v float64, prec int) string { return fmt.Sprintf("%.*f", prec, v) }

func (f Figure) target() string {
	if f.Target == nil {
		return "-"
	}
	return f.Target.Op + " " + FormatValue(f.Target.Limit, f.Unit)
}

func (f Figure) result() string {
	switch {
	case f.Pass == nil:
		return ""
	case *f.Pass:
		return "pass"
	default:
		return "FAIL"
	}
}

// WriteText writes the human-readable report.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", r.Title)
	fmt.Fprintf(&b, "date:     %s\n", r.Date)
	fmt.Fprintf(&b, "command:  %s\n", r.Command)
	fmt.Fprintf(&b, "machine:  %s\n", r.Machine)
	t := r.Tree
	how := "generated"
	if t.Reused {
		how = "reused"
	}
	fmt.Fprintf(&b, "tree:     %s: %s files, %s directories, %s (%s)\n\n", t.Root, commas(int64(t.Files)),
		commas(int64(t.Dirs)), t.Layout, how)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "id\tfigure\tvalue\ttarget\tresult\tdetail")
	for _, f := range r.Figures {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.ID, f.Name, FormatValue(f.Value, f.Unit), f.target(), f.result(), f.Detail)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("render table: %w", err)
	}
	if len(r.Latency) > 0 {
		b.WriteString("\nlatency (ms)\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "query\tcount\tp50\tp90\tp99\tp99.9\tmax\tfind\t")
		for _, s := range r.Latency {
			find := "-"
			if s.FindMs > 0 {
				find = trimFloat(s.FindMs, 2)
			}
			l := s.Lat
			fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%s\t\n", s.Name, l.Count, l.P50, l.P90, l.P99, l.P999, l.Max, find)
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("render latency table: %w", err)
		}
	}
	if len(r.Errors) > 0 {
		b.WriteString("\nerrors\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("\nhow\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteFiles writes report.txt, report.json and report.html into dir.
func (r *Report) WriteFiles(dir string) error {
	var txt strings.Builder
	if err := r.WriteText(&txt); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	var html strings.Builder
	if err := r.WriteHTML(&html); err != nil {
		return err
	}
	for name, data := range map[string]string{"report.txt": txt.String(), "report.json": string(js) + "\n", "report.html": html.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}
