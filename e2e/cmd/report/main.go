// Command report is make e2e's bookkeeping (package e2e/report):
//
//	report cnp-skips            the conformance suite's parts skipped for SCTP, with reasons
//	report cnp-skip-pattern     the same as one -test.skip pattern
//	report junit -name N -o F   a `go tool test2json` stream on stdin to JUnit file F,
//	                            echoing the tests' output
//	report summary FLAGS        the summary line; exit 1 unless everything passed
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/policyd/policyd/e2e/report"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	code := 0
	switch os.Args[1] {
	case "cnp-skips", "cnp-skip-pattern":
		err = skips(os.Args[1] == "cnp-skip-pattern")
	case "junit":
		err = junit(os.Args[2:])
	case "summary":
		code, err = summary(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(2)
	}
	os.Exit(code)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: report cnp-skips | cnp-skip-pattern | junit -name NAME -o FILE | summary FLAGS")
	os.Exit(2)
}

func skips(pattern bool) error {
	s, err := report.SCTPSkips()
	if err != nil {
		return err
	}
	if pattern {
		p, err := report.SkipPattern(s)
		if err != nil {
			return err
		}
		fmt.Println(p)
		return nil
	}
	for _, sk := range s {
		fmt.Printf("%s: %s\n", sk.Name, sk.Reason)
	}
	return nil
}

func junit(args []string) error {
	fs := flag.NewFlagSet("junit", flag.ExitOnError)
	name := fs.String("name", "", "suite name")
	out := fs.String("o", "", "JUnit file to write")
	_ = fs.Parse(args)
	if *name == "" || *out == "" {
		return fmt.Errorf("junit: -name and -o are required")
	}
	s, err := report.FromTest2JSON(os.Stdin, *name, os.Stdout)
	if err != nil {
		return err
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := report.WriteJUnit(f, s); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func summary(args []string) (int, error) {
	var in report.Inputs
	fs := flag.NewFlagSet("summary", flag.ExitOnError)
	fs.StringVar(&in.Netpol, "netpol", "", "e2e.test's JUnit file")
	fs.StringVar(&in.NetpolFocus, "netpol-focus", "Netpol", "the --ginkgo.focus it ran with")
	fs.StringVar(&in.NetpolSkip, "netpol-skip", "", "the --ginkgo.skip it ran with")
	fs.IntVar(&in.NetpolMin, "netpol-min", 1, "the fewest specs the focus must select")
	fs.StringVar(&in.CNP, "cnp", "", "the conformance suite's JUnit file")
	fs.StringVar(&in.CNPRun, "cnp-run", "", "the regular expression its tests were selected by (empty: all)")
	fs.IntVar(&in.CNPMin, "cnp-min", 1, "the fewest tests it must select")
	fs.StringVar(&in.Lifecycle, "lifecycle", "", "the lifecycle tests' JUnit file (optional)")
	_ = fs.Parse(args)
	ok, err := report.Summarize(os.Stdout, in)
	if err != nil {
		return 2, err
	}
	if !ok {
		return 1, nil
	}
	return 0, nil
}
