package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// The test binary doubles as a tiny network tool that the tests run inside
// namespaces with `privlink exec`: set helperEnv to the mode.
const helperEnv = "PRIVLINK_E2E_HELPER"

// runHelper runs one helper mode and returns the exit status.
//
//	serve ADDR TEXT  accept connections on ADDR, answer each with TEXT
//	                 (prints "ready" once listening; runs until killed)
//	echo ADDR TEXT   as serve, then echo what each connection sends
//	dial ADDR        connect to ADDR within 3 s and print what it sends
func runHelper(mode string, args []string) int {
	switch {
	case (mode == "serve" || mode == "echo") && len(args) == 2:
		ln, err := net.Listen("tcp", args[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("ready")
		for {
			c, err := ln.Accept()
			if err != nil {
				return 1
			}
			go func() {
				defer c.Close()
				_, _ = io.WriteString(c, args[1]+"\n")
				if mode == "echo" {
					_, _ = io.Copy(c, c)
				}
			}()
		}
	case mode == "dial" && len(args) == 1:
		c, err := net.DialTimeout("tcp", args[0], 3*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Print(line)
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q %q\n", mode, args)
	return 2
}
