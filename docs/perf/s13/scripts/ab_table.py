# A/B table of a run folder: python3 ab_table.py DIR (reads DIR/ab_wN_VARIANT_REP.txt)
import re,glob,collections,sys
res=collections.defaultdict(lambda: collections.defaultdict(list))
def isnum(t):
    try: float(t); return True
    except: return False
for f in sorted(glob.glob(sys.argv[1]+'/ab_*.txt')):
    parts=f.split('/')[-1][:-4].split('_')
    if len(parts)!=4: continue
    _,w,v,rep=parts
    names=[]
    for l in open(f):
        if not l.startswith('[rank 0]'): continue
        l=l.replace('[rank 0]','').strip()
        if l.startswith('#') and ('two-shot' in l or 'zero-copy' in l or 'auto' in l or 'one-shot' in l) and not any(x in l for x in ['Avg','mode','inc ','size','(B)']):
            names=l.lstrip('#').split()
        m=re.match(r'^(\d+)\s+\d+\s+\S+\s+\S+\s+(.*)$',l)
        if m:
            toks=m.group(2).split(); i=0
            for nm in names:
                if i>=len(toks): break
                t=toks[i]
                if isnum(t): res[(w,nm,int(m.group(1)))][v].append(float(t))
                i+=4
                if i<len(toks) and not isnum(toks[i]) and toks[i] not in ('n/a','-'): i+=1
vs=sorted({v for k in res for v in res[k]}, key=lambda x:(x!='cur',x))
for k in sorted(res):
    r=res[k]
    print(k[0],'%-9s'%k[1][:9],'%9d'%k[2],'  '.join('%s=%s'%(v[:6],'/'.join('%.2f'%x for x in r[v])) for v in vs))
