package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxy forwards TCP from a loopback address to Fusion and can cut the link: while cut it
// closes every connection and refuses new ones, as a partition would.
type proxy struct {
	t      testing.TB
	target string
	addr   string

	mu    sync.Mutex
	lis   net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	// up counts the bytes forwarded from clients to the target.
	up atomic.Int64
}

// countingWriter adds what passes through it to n.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func newProxy(t testing.TB, target string) *proxy {
	p := &proxy{t: t, target: target, addr: freePort(t), conns: map[net.Conn]struct{}{}}
	p.restore()
	t.Cleanup(func() {
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) restore() {
	lis, err := net.Listen("tcp", p.addr)
	must(p.t, err)
	p.mu.Lock()
	p.lis = lis
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns[in], p.conns[out] = struct{}{}, struct{}{}
			p.mu.Unlock()
			for i, pair := range [][2]net.Conn{{out, in}, {in, out}} {
				var dst io.Writer = pair[0]
				if i == 0 {
					dst = countingWriter{pair[0], &p.up}
				}
				p.wg.Add(1)
				go func() {
					defer p.wg.Done()
					_, _ = io.Copy(dst, pair[1])
					pair[0].Close()
					pair[1].Close()
				}()
			}
		}
	}()
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lis != nil {
		p.lis.Close()
		p.lis = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// TestPartitionExpiresSessionAndRecovers: the agent reaches Fusion through a proxy; the link
// is cut past the session timeout while files are written; once restored the agent creates a
// new session by itself and the view holds every file written during the cut.
func TestPartitionExpiresSessionAndRecovers(t *testing.T) {
	root := makeTree(t)
	c := newCluster(t, root)
	p := newProxy(t, c.addr)
	c.agentAddr = p.addr
	c.writeConfigs()
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000)
	first, err := c.sessionOf("e2e-agent")
	must(t, err)

	p.cut()
	for i := range 5 {
		must(t, os.WriteFile(filepath.Join(root, "d00", fmt.Sprintf("during-cut-%d.dat", i)), []byte("x"), 0o644))
	}
	c.waitNoSessions("session expires during the cut")
	p.restore()
	c.waitNewSession("e2e-agent", first.ID)
	c.waitFiles(60*time.Second, "/", 1005)
	for i := range 5 {
		must(t, c.statMatches(fmt.Sprintf("/d00/during-cut-%d.dat", i)))
	}
}
