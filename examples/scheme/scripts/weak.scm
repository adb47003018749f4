; A weak table whose entries go once their keys are dropped and a collection runs.
; Keys are pairs held by the list `keys`; the values are numbers, and one value points
; back to its own key (an ephemeron does not let a value keep its key alive).
(define n (size 100))
(define t (make-weak-table))
(define keys '())

(define (fill i)
  (if (< i n)
      (let ((k (cons i '())))
        (set! keys (cons k keys))
        (weak-table-set! t k (* i i))
        (fill (+ i 1)))))
(fill 0)

(define loop-key (list 'self))
(weak-table-set! t loop-key (list 'value-pointing-back loop-key))

(print "entries while the keys live: " (weak-table-count t))
(print "the value of the last key: " (weak-table-ref t (car keys) 'none))
(set! keys '())
(set! loop-key #f)
(collect)
(print "entries after the keys are dropped: " (weak-table-count t))
