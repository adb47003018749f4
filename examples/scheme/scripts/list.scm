; A list of n pairs, built, walked twice (its length, its sum), dropped and collected.
; The list is held by a `let` frame, not a global, so that threads running this script
; at once (`--threads 2`) each have their own.
(define n (size 1000000))

(define (build i acc)
  (if (= i 0)
      acc
      (build (- i 1) (cons i acc))))

(define (len l acc)
  (if (null? l)
      acc
      (len (cdr l) (+ acc 1))))

(define (sum l acc)
  (if (null? l)
      acc
      (sum (cdr l) (+ acc (car l)))))

(define (run)
  (let ((lst (build n '())))
    (print "length: " (len lst 0))
    (print "sum: " (sum lst 0))))

(run)
(collect)
(print "list dropped and collected")
