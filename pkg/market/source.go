package market

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Source is one place market data comes from. Fetch returns the coins it
// knows; fields it does not supply are left zero.
type Source interface {
	Name() string
	Fetch(ctx context.Context) ([]Coin, error)
}

// Role says which facts a source is trusted for when sources are merged.
type Role uint8

const (
	// RoleChain marks sources of chain facts: algorithm, block time,
	// block reward, difficulty, nethash.
	RoleChain Role = 1 << iota
	// RolePrice marks sources of prices.
	RolePrice
)

// Roler is implemented by sources that supply only some facts. A source
// that does not implement it is trusted for both.
type Roler interface {
	Roles() Role
}

func rolesOf(s Source) Role {
	if r, ok := s.(Roler); ok {
		return r.Roles()
	}
	return RoleChain | RolePrice
}

// maxBody bounds what a source may send; WhatToMine's full coin list is
// well under 1 MiB.
const maxBody = 8 << 20

// getJSON fetches url and returns the body, failing on a non-2xx status or
// an oversized reply so a broken site cannot exhaust memory.
func getJSON(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "quarry-controller")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", url, err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("get %s: reply larger than %d bytes", url, maxBody)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		snippet := body
		if len(snippet) > 200 {
			snippet = snippet[:200]
		}
		return nil, fmt.Errorf("get %s: %w: %s: %q", url, ErrHTTPStatus, resp.Status, snippet)
	}
	return body, nil
}

// ErrHTTPStatus is wrapped by source errors for non-2xx replies.
var ErrHTTPStatus = errors.New("unexpected HTTP status")
