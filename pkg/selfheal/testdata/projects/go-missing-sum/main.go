// Command sharecount counts accepted shares from several pools at once.
package main

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
)

func main() {
	g, _ := errgroup.WithContext(context.Background())
	counts := make([]int, 3)
	for i := range counts {
		g.Go(func() error { counts[i] = i * 10; return nil })
	}
	if err := g.Wait(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(counts)
}
