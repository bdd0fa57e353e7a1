// berthd's addition to containerd's integration/client test package, copied
// next to containerd's files at build time (it is not part of containerd).
//
// The tests pull hard-coded public references through the client's default
// resolver, whose HTTP client is http.DefaultClient, which sends through
// http.DefaultTransport.  Replacing that transport before any test runs moves
// every registry request to the local registry holding the stand-in images:
//
//	https://HOST/v2/REPO/...  ->  http://$BERTHD_TEST_REGISTRY/v2/HOST/REPO/...
//
// A reference pinned upstream by a digest whose bytes cannot be reproduced
// offline is served by the stand-in named in $BERTHD_TEST_REGISTRY_PINS
// ("upstream=standin,..." digests).  Nothing else leaves the machine: any
// request that is not a registry API call fails with an error saying why.
package client

import (
	"fmt"
	"net/http"
	"os"
	"strings"
)

type standinRegistry struct {
	addr string
	pins map[string]string
	next http.RoundTripper
}

func init() {
	s := &standinRegistry{
		addr: os.Getenv("BERTHD_TEST_REGISTRY"),
		pins: map[string]string{},
		next: http.DefaultTransport,
	}
	for _, pair := range strings.Split(os.Getenv("BERTHD_TEST_REGISTRY_PINS"), ",") {
		if from, to, ok := strings.Cut(pair, "="); ok {
			s.pins[from] = to
		}
	}
	http.DefaultTransport = s
}

func (s *standinRegistry) RoundTrip(req *http.Request) (*http.Response, error) {
	if s.addr == "" {
		return nil, fmt.Errorf("offline test run: no stand-in registry for %s (BERTHD_TEST_REGISTRY is unset)", req.URL)
	}
	if req.URL.Host == s.addr {
		return s.next.RoundTrip(req)
	}
	if !strings.HasPrefix(req.URL.Path, "/v2/") {
		return nil, fmt.Errorf("offline test run: %s is not a registry API request", req.URL)
	}
	path, rest := "/v2/", strings.TrimPrefix(req.URL.Path, "/v2/")
	if rest != "" {
		if i := strings.LastIndex(rest, "/"); i >= 0 {
			if pin, ok := s.pins[rest[i+1:]]; ok {
				rest = rest[:i+1] + pin
			}
		}
		path += req.URL.Host + "/" + rest
	}
	out := req.Clone(req.Context())
	out.URL.Scheme = "http"
	out.URL.Host = s.addr
	out.URL.Path = path
	out.URL.RawPath = ""
	out.Host = s.addr
	return s.next.RoundTrip(out)
}
