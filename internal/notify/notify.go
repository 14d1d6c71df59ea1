// Package notify pings monitoring services when a backup starts, succeeds
// or fails, by the healthchecks.io convention that many services share:
// URL/start at the start, URL on success, URL/fail on failure, each a POST
// whose body (the summary or the error) the service keeps as a log.
//
// A ping that cannot be delivered is retried a few times and then given up:
// monitoring exists to notice backups that did not happen, and a backup
// never fails because its monitor is down.
package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/runup/runup/internal/hooks"
)

// Pinger sends pings to a list of URLs.
type Pinger struct {
	URLs    []string
	Client  *http.Client  // nil: one with Timeout
	Timeout time.Duration // per attempt; 0: DefaultTimeout
	Tries   int           // 0: DefaultTries
	// Backoff is the wait before the second attempt, doubled after each.
	Backoff time.Duration
	// UserAgent names the program in requests.
	UserAgent string
}

const (
	DefaultTimeout = 10 * time.Second
	DefaultTries   = 3
	// MaxBody is the most a ping carries: healthchecks.io keeps 10 KB.
	MaxBody = 10_000
)

// URLFor is where a ping for ev goes, by the healthchecks convention.
func URLFor(raw string, ev hooks.Event) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	switch ev {
	case hooks.Start:
		u.Path = strings.TrimSuffix(u.Path, "/") + "/start"
	case hooks.Failure:
		u.Path = strings.TrimSuffix(u.Path, "/") + "/fail"
	}
	u.RawPath = ""
	return u.String(), nil
}

// Notify pings every URL for ev; the error names each URL that could not
// be reached after all tries.
func (p *Pinger) Notify(ctx context.Context, ev hooks.Event, body string) error {
	if len(body) > MaxBody {
		body = body[:MaxBody-3] + "..."
	}
	var failed []string
	for _, raw := range p.URLs {
		if err := p.ping(ctx, raw, ev, body); err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s", strings.Join(failed, "; "))
	}
	return nil
}

func (p *Pinger) ping(ctx context.Context, raw string, ev hooks.Event, body string) error {
	target, err := URLFor(raw, ev)
	if err != nil {
		return fmt.Errorf("%s: %w", raw, err)
	}
	client := p.Client
	if client == nil {
		client = &http.Client{}
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tries := p.Tries
	if tries <= 0 {
		tries = DefaultTries
	}
	backoff := p.Backoff
	if backoff <= 0 {
		backoff = time.Second
	}
	var last error
	for try := range tries {
		if try > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: %w", redact(target), last)
			case <-time.After(backoff):
			}
			backoff *= 2
		}
		if last = p.send(ctx, client, target, body, timeout); last == nil {
			return nil
		}
	}
	return fmt.Errorf("%s: %w (tried %d times)", redact(target), last, tries)
}

func (p *Pinger) send(ctx context.Context, client *http.Client, target, body string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	if p.UserAgent != "" {
		req.Header.Set("User-Agent", p.UserAgent)
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err // the URL is named by the caller, redacted
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("the server answered %s", resp.Status)
	}
	return nil
}

// redact drops a URL's user information and query from messages: the
// secret of a ping URL is often there (the path's UUID is the service's
// choice and is kept, as the user needs to know which URL failed).
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	return u.String()
}
