; Naive doubly recursive Fibonacci: calls, frames and integer arithmetic. Every call
; makes a frame (a heap object) that is garbage as soon as the call returns, freed when
; its count reaches zero.
(define n (size 25))

(define (fib n)
  (if (< n 2)
      n
      (+ (fib (- n 1)) (fib (- n 2)))))

(print "fib(" n ") = " (fib n))
