// Go's net/http as a load generator (seed 002): an http.Transport cloned from
// http.DefaultTransport with MaxIdleConns, MaxIdleConnsPerHost and DisableKeepAlives
// set from the command line, the pool settings the note's gateway got wrong.
//
//	go-load -url URL -users N -duration S [-max-requests N] [-max-idle-conns N]
//	        [-max-idle-conns-per-host N] [-disable-keepalives] [-pause-ms N]
//	        -out /out/client.json
//
// -users goroutines send GETs (the body read to its end and closed, so a connection
// can go back to the pool), -pause-ms apart, until -duration has passed or
// -max-requests were sent in all. Writes the harness's native-client JSON (harness/analyse/native.py):
// responses by status, errors by kind, every request's latency in whole µs, the
// connections dialled and their distinct local ports (recorded in DialContext).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type result struct {
	Generator   string           `json:"generator"`
	Requests    int64            `json:"requests"`
	DurationUs  int64            `json:"duration_us"`
	Status      map[string]int64 `json:"status"`
	Errors      map[string]int64 `json:"errors"`
	LatencyUs   [][2]int64       `json:"latency_us"`
	Connections int64            `json:"connections"`
	Ports       int              `json:"ports"`
}

// kind names an error as the seed's logs did: the errno where there is one
// (EADDRNOTAVAIL is "cannot assign requested address"), else timeout or other.
func kind(err error) string {
	for _, e := range []syscall.Errno{syscall.EADDRNOTAVAIL, syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE} {
		if errors.Is(err, e) {
			return map[syscall.Errno]string{syscall.EADDRNOTAVAIL: "EADDRNOTAVAIL", syscall.ECONNREFUSED: "ECONNREFUSED", syscall.ECONNRESET: "ECONNRESET", syscall.EPIPE: "EPIPE"}[e]
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "EOF"
	}
	return "other"
}

func main() {
	url := flag.String("url", "", "target URL")
	users := flag.Int("users", 1, "goroutines sending at once")
	duration := flag.Float64("duration", 1, "seconds")
	maxRequests := flag.Int64("max-requests", 0, "requests in all (0: no cap)")
	maxIdle := flag.Int("max-idle-conns", 100, "Transport.MaxIdleConns")
	maxIdlePerHost := flag.Int("max-idle-conns-per-host", 0, "Transport.MaxIdleConnsPerHost")
	disable := flag.Bool("disable-keepalives", false, "Transport.DisableKeepAlives")
	pause := flag.Int("pause-ms", 0, "pause after each response before the next request")
	out := flag.String("out", "", "where the JSON goes")
	flag.Parse()

	var mu sync.Mutex
	ports := map[int]bool{}
	var dialled int64
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = *maxIdle
	tr.MaxIdleConnsPerHost = *maxIdlePerHost
	tr.DisableKeepAlives = *disable
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err == nil {
			atomic.AddInt64(&dialled, 1)
			mu.Lock()
			ports[c.LocalAddr().(*net.TCPAddr).Port] = true
			mu.Unlock()
		}
		return c, err
	}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	began := time.Now()
	deadline := began.Add(time.Duration(*duration * float64(time.Second)))
	var sent int64
	status, errs, latency := map[string]int64{}, map[string]int64{}, map[int64]int64{}
	var wg sync.WaitGroup
	for i := 0; i < *users; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			myStatus, myErrs, myLatency := map[string]int64{}, map[string]int64{}, map[int64]int64{}
			for time.Now().Before(deadline) {
				if *maxRequests > 0 && atomic.AddInt64(&sent, 1) > *maxRequests {
					break
				}
				start := time.Now()
				resp, err := client.Get(*url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil {
					myErrs[kind(err)]++
				} else {
					myStatus[strconv.Itoa(resp.StatusCode)]++
				}
				myLatency[time.Since(start).Microseconds()]++
				if *pause > 0 {
					// seed 002's gateway answering its own client: the connection
					// waits in the idle pool meanwhile
					time.Sleep(time.Duration(*pause) * time.Millisecond)
				}
			}
			mu.Lock()
			for k, v := range myStatus {
				status[k] += v
			}
			for k, v := range myErrs {
				errs[k] += v
			}
			for k, v := range myLatency {
				latency[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := result{Generator: "go", DurationUs: time.Since(began).Microseconds(), Status: status,
		Errors: errs, Connections: atomic.LoadInt64(&dialled), Ports: len(ports)}
	for _, v := range status {
		r.Requests += v
	}
	for us, n := range latency {
		r.LatencyUs = append(r.LatencyUs, [2]int64{us, n})
	}
	sort.Slice(r.LatencyUs, func(i, j int) bool { return r.LatencyUs[i][0] < r.LatencyUs[j][0] })
	if r.LatencyUs == nil {
		r.LatencyUs = [][2]int64{}
	}
	data, _ := json.Marshal(r)
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		panic(err)
	}
}
