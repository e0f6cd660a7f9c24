// spdystream_client: exec and port-forward through moby/spdystream (Debian: golang-github-docker-spdystream-dev), the SPDY library client-go uses, against spdy_echo_server.

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/docker/spdystream"
)

func dial(addr, path, proto string) *spdystream.Connection {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		panic(err)
	}
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: %s\r\nContent-Length: 0\r\n\r\n", path, addr, proto)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		panic(fmt.Sprint("upgrade: ", err, resp))
	}
	// client-go reads the 101 this way, then frames from the raw conn:
	// whatever the server sent right behind the 101 would be lost.
	if br.Buffered() != 0 {
		panic("the server sent bytes right behind the 101 (client-go would lose them)")
	}
	conn, err := spdystream.NewConnection(c, false)
	if err != nil {
		panic(err)
	}
	go conn.Serve(func(s *spdystream.Stream) { s.Refuse() })
	return conn
}

func open(conn *spdystream.Connection, h http.Header) *spdystream.Stream {
	s, err := conn.CreateStream(h, nil, false)
	if err != nil {
		panic(err)
	}
	if err := s.WaitTimeout(10 * time.Second); err != nil {
		panic(err)
	}
	return s
}

func exec(addr string) {
	start := time.Now()
	conn := dial(addr, "/exec/token", "v4.channel.k8s.io")
	mk := func(t string) *spdystream.Stream { h := http.Header{}; h.Set("streamType", t); return open(conn, h) }
	errS, in, out, errOut := mk("error"), mk("stdin"), mk("stdout"), mk("stderr")
	payload := bytes.Repeat([]byte("0123456789abcdef"), 65536) // 1 MiB
	var wg sync.WaitGroup
	var got, gotErr, status []byte
	wg.Add(3)
	go func() { defer wg.Done(); got, _ = io.ReadAll(out) }()
	go func() { defer wg.Done(); gotErr, _ = io.ReadAll(errOut) }()
	go func() { defer wg.Done(); status, _ = io.ReadAll(errS) }()
	for off := 0; off < len(payload); off += 32768 {
		if _, err := in.Write(payload[off : off+32768]); err != nil {
			panic(err)
		}
	}
	in.Close()
	wg.Wait()
	conn.Close()
	ok := bytes.Equal(got, payload) && string(gotErr) == "stderr-bytes" && strings.Contains(string(status), "NonZeroExitCode") && strings.Contains(string(status), `"7"`)
	fmt.Printf("exec: stdout %d bytes equal=%v stderr=%q status=%s took=%v ok=%v\n", len(got), bytes.Equal(got, payload), gotErr, status, time.Since(start), ok)
	if !ok {
		os.Exit(1)
	}
}

func portforward(addr string) {
	conn := dial(addr, "/portforward/token", "portforward.k8s.io")
	type pair struct{ e, d *spdystream.Stream }
	var pairs []pair
	for i, port := range []string{"80", "7"} {
		h := http.Header{}
		h.Set("streamType", "error")
		h.Set("port", port)
		h.Set("requestID", fmt.Sprint(i))
		e := open(conn, h)
		e.Close()
		h.Set("streamType", "data")
		d := open(conn, h)
		pairs = append(pairs, pair{e, d})
	}
	fail := false
	for i, p := range pairs {
		p.d.Write([]byte(fmt.Sprintf("hello %d", i)))
		p.d.Close()
	}
	for i, p := range pairs {
		data, _ := io.ReadAll(p.d)
		msg, _ := io.ReadAll(p.e)
		fmt.Printf("portforward %d: data=%q error=%q\n", i, data, msg)
		if i == 0 && (string(data) != "port 80 got hello 0" || len(msg) != 0) {
			fail = true
		}
		if i == 1 && !strings.Contains(string(msg), "connection refused") {
			fail = true
		}
	}
	conn.Close()
	if fail {
		os.Exit(1)
	}
}

func main() {
	exec(os.Args[1])
	portforward(os.Args[1])
}
