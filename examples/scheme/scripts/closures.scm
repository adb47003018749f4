; n closures, each stored in its own environment frame (the internal define of `self`):
; each is a cycle frame -> closure -> frame, which counting alone never frees. Each is
; called once, then dropped; collections (the heap's own as it grows, and the last one
; here) free them.
(define n (size 1000000))

(define (make-counter k)
  (define (self) k)
  self)

(define (loop i made total)
  (if (= i n)
      (print "closures made and called: " made ", their values summed: " total)
      (let ((c (make-counter i)))
        (loop (+ i 1) (+ made 1) (+ total (c))))))

(loop 0 0 0)
(collect)
(print "collected")
