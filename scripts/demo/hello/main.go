// Command hello is the sample program that make demo builds as a Windows PE
// image and as an ELF file, to sign and verify.
package main

import "fmt"

func main() { fmt.Println("hello from a signed binary") }
