from evaluator.synthetic.benchmark import main

main()
